"""Running a Case: eagerly, in float64, and compiled, each on a fresh identical copy of the inputs.

Everything the oracle needs is captured here as an `Observation` per run; nothing is judged.
"""

from __future__ import annotations

import linecache
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch._dynamo
from torch._dynamo.testing import CompileCounterWithBackend
from torch.utils._pytree import tree_flatten

from fuzz.backends import resolve_backend
from fuzz.case import Case
from fuzz.codegen import function_source
from fuzz.materialize import materialize
from fuzz.sdpa_state import BackendState, current_state, restore_state

# Fake-tensor tracing logs every error it meets at ERROR level; the oracle reports the ones
# that matter, and invalid cases raise them on purpose.
logging.getLogger("torch._subclasses.fake_tensor").setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class Observation:
    """One run of the function: its flat outputs (or the exception) and the world after it."""

    leaves: tuple[Any, ...] | None
    structure: str | None
    error: BaseException | None
    inputs: dict[str, Any]
    state_after: BackendState


@dataclass(frozen=True)
class Frames:
    """Dynamo's own accounting for the compiled function, read from a counting backend."""

    first_call: int
    second_call: int
    fullgraph_error: bool


@dataclass
class Timings:
    """Seconds per phase, accumulated across cases."""

    phases: dict[str, float] = field(default_factory=dict)

    def add(self, phase: str, seconds: float) -> None:
        self.phases[phase] = self.phases.get(phase, 0.0) + seconds


@dataclass(frozen=True)
class CaseRun:
    eager: Observation
    reference: Observation
    compiled: Observation
    frames: Frames


def load_function(case: Case) -> Callable[..., Any]:
    """Exec the generated source as a module, registered with linecache for tracebacks."""
    source = function_source(case)
    filename = f"<sdpa-fuzz {abs(hash(source)):x}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = {"__name__": "sdpa_fuzz_case"}
    exec(compile(source, filename, "exec"), namespace)
    return namespace["fn"]


def _upcast(inputs: dict[str, Any]) -> dict[str, Any]:
    return {name: t.detach().to(torch.float64) if t.is_floating_point() else t
            for name, t in inputs.items()}


def observe(fn: Callable[..., Any], inputs: dict[str, Any], start: BackendState) -> Observation:
    """Call `fn` once from the `start` backend state; restore that state afterwards."""
    restore_state(start)
    try:
        result = fn(**inputs)
    except Exception as exc:  # the outcome itself is observed
        leaves, structure, error = None, None, exc
    else:
        flat, spec = tree_flatten(result)
        leaves, structure, error = tuple(flat), str(spec), None
    after = current_state()
    restore_state(start)
    return Observation(leaves, structure, error, inputs, after)


def _timed(timings: Timings | None, phase: str, thunk: Callable[[], Any]) -> Any:
    t0 = time.perf_counter()
    try:
        return thunk()
    finally:
        if timings is not None:
            timings.add(phase, time.perf_counter() - t0)


def run_case(case: Case, backend: str | None = None, timings: Timings | None = None) -> CaseRun:
    """Eager, float64 reference and compiled runs of `case`, with Dynamo reset first."""
    backend = backend or case.compile.backend
    settings = case.compile
    compiler = resolve_backend(backend, settings.mode, settings.dynamic)
    fn = load_function(case)
    start = current_state()
    eager = _timed(timings, "eager", lambda: observe(fn, materialize(case), start))
    reference = _timed(timings, "reference",
                       lambda: observe(fn, _upcast(materialize(case)), start))
    torch._dynamo.reset()
    counter = CompileCounterWithBackend(compiler)  # type: ignore[arg-type]
    compiled_fn = torch.compile(fn, backend=counter, fullgraph=settings.fullgraph,
                                dynamic=settings.dynamic)
    compiled = _timed(timings, "compile+compiled",
                      lambda: observe(compiled_fn, materialize(case), start))
    first = counter.frame_count
    if compiled.error is None:
        _timed(timings, "compiled", lambda: observe(compiled_fn, materialize(case), start))
    frames = Frames(first_call=first, second_call=counter.frame_count - first,
                    fullgraph_error=_is_graph_break_error(compiled.error))
    return CaseRun(eager, reference, compiled, frames)


def _is_graph_break_error(error: BaseException | None) -> bool:
    from torch._dynamo.exc import Unsupported
    return isinstance(error, Unsupported)
