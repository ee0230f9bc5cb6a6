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
    """Dynamo's own accounting for the compiled function, read from a counting backend.

    `reused` says the compiled function was already warm from a case that differs only
    in its seeds, so its first call must compile nothing at all.
    """

    first_call: int
    second_call: int
    reused: bool


@dataclass
class Timings:
    """Seconds per phase, accumulated across cases."""

    phases: dict[str, float] = field(default_factory=dict)

    def add(self, phase: str, seconds: float) -> None:
        self.phases[phase] = self.phases.get(phase, 0.0) + seconds


@dataclass(frozen=True)
class CompiledProgram:
    """A compiled function with the counter that saw every graph it compiled."""

    fn: Callable[..., Any]
    counter: CompileCounterWithBackend


@dataclass(frozen=True)
class CaseRun:
    eager: Observation
    reference: Observation
    compiled: Observation
    frames: Frames
    program: CompiledProgram


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


def compile_program(case: Case, backend: str) -> CompiledProgram:
    """Reset Dynamo, then wrap the case's function in `torch.compile` with a counter."""
    settings = case.compile
    compiler = resolve_backend(backend, settings.mode, settings.dynamic)
    torch._dynamo.reset()
    counter = CompileCounterWithBackend(compiler)  # type: ignore[arg-type]
    fn = torch.compile(load_function(case), backend=counter, fullgraph=settings.fullgraph,
                       dynamic=settings.dynamic)
    return CompiledProgram(fn, counter)


def run_case(case: Case, backend: str | None = None, timings: Timings | None = None,
             warm: CompiledProgram | None = None) -> CaseRun:
    """Eager, float64 reference and compiled runs of `case`.

    Compiles afresh (Dynamo reset first) unless `warm` is given: a program compiled for a
    case that differs from this one only in its seeds, which Dynamo's guards must accept.
    """
    backend = backend or case.compile.backend
    fn = load_function(case)
    start = current_state()
    eager = _timed(timings, "eager", lambda: observe(fn, materialize(case), start))
    reference = _timed(timings, "reference",
                       lambda: observe(fn, _upcast(materialize(case)), start))
    program = warm or _timed(timings, "compile", lambda: compile_program(case, backend))
    before = program.counter.frame_count
    compiled = _timed(timings, "compile+compiled" if warm is None else "compiled",
                      lambda: observe(program.fn, materialize(case), start))
    first = program.counter.frame_count - before
    if compiled.error is None:
        _timed(timings, "compiled", lambda: observe(program.fn, materialize(case), start))
    frames = Frames(first_call=first, second_call=program.counter.frame_count - before - first,
                    reused=warm is not None)
    return CaseRun(eager, reference, compiled, frames, program)
