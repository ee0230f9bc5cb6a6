"""Naming a torch.compile backend: a registered name, or `module:attr` for any callable."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Callable


class BackendError(ValueError):
    """The backend cannot be found; the message says which and why."""


def resolve_backend(name: str, mode: str | None = None, dynamic: bool | None = None
                    ) -> str | Callable[..., Any]:
    """What `CompileCounterWithBackend` should wrap for `name`.

    `inductor` with a `mode` is wrapped the way `torch.compile` itself wraps it, since a
    counting backend in front of it would otherwise drop the mode.
    """
    if ":" in name:
        module_name, _, attr = name.partition(":")
        if os.getcwd() not in sys.path:
            sys.path.append(os.getcwd())  # as `python -m` would: `tests.faults:x` from a checkout
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise BackendError(f"backend {name!r}: cannot import {module_name!r} ({exc})") from None
        target: Any = module
        for part in attr.split("."):
            if not hasattr(target, part):
                raise BackendError(f"backend {name!r}: {module_name!r} has no {attr!r}")
            target = getattr(target, part)
        if not callable(target):
            raise BackendError(f"backend {name!r} is not callable")
        return target
    from torch._dynamo.backends.registry import list_backends, lookup_backend
    from torch._dynamo.exc import InvalidBackend
    try:
        lookup_backend(name)
    except InvalidBackend:
        known = ", ".join(sorted(set(list_backends(exclude_tags=())) | {"eager", "aot_eager"}))
        raise BackendError(f"unknown backend {name!r}; registered: {known}; "
                           "or name a callable as module:attr") from None
    if name == "inductor" and mode not in (None, "default"):
        import torch
        return torch._TorchCompileInductorWrapper(mode, None, dynamic)
    return name


def declared_layers(name: str) -> tuple[str, ...] | None:
    """The layers a `module:attr` backend says it runs through, as its `sdpa_fuzz_layers`
    attribute (`("dynamo", "aot", "inductor")` for a backend built on Inductor): the known
    bugs of those layers are then known for it too. None for a registered name."""
    if ":" not in name:
        return None
    layers = getattr(resolve_backend(name), "sdpa_fuzz_layers", None)
    return tuple(layers) if layers else None
