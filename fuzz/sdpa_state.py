"""The process-global SDPA backend state: which backends are enabled, and their priority.

`sdpa_kernel` and `torch.backends.cuda.enable_*_sdp` change it; compiled code must leave
it exactly as eager code does, so it is captured after every run and restored between runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

FLAGS = ("flash", "mem_efficient", "math", "cudnn", "overrideable")


@dataclass(frozen=True)
class BackendState:
    enabled: tuple[str, ...]
    priority: tuple[int, ...]

    def describe(self) -> str:
        return f"enabled={list(self.enabled)} priority={list(self.priority)}"


def _getter(flag: str):
    return getattr(torch._C, f"_get_{flag}_sdp_enabled")


def _setter(flag: str):
    return getattr(torch._C, f"_set_sdp_use_{flag}")


def current_state() -> BackendState:
    enabled = tuple(flag for flag in FLAGS if _getter(flag)())
    return BackendState(enabled, tuple(int(p) for p in torch._C._get_sdp_priority_order()))


def restore_state(state: BackendState) -> None:
    for flag in FLAGS:
        _setter(flag)(flag in state.enabled)
    torch._C._set_sdp_priority_order(list(state.priority))
