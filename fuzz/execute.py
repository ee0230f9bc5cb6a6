"""Running a Case in process: its function loaded and compiled, then its calls run by
`fuzz.calls`, eagerly, in float64 and compiled, each on a fresh identical copy of the inputs.
Everything the oracle needs is captured as an `Observation` per run; nothing is judged.
"""

from __future__ import annotations

import hashlib
import linecache
import logging
import sys
import types
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch._dynamo
import torch._inductor.config

from fuzz import rewrites
from fuzz.backends import resolve_backend
from fuzz.calls import AcceptedGraphCounter, Runs, run_calls
from fuzz.case import Case, ModuleInput, marked_dims
from fuzz.codegen import function_source, input_factory
from fuzz.kernels import KernelLog, ReferenceSDPA
from fuzz.plan import calls_of

# Inductor compiles random ops to draw as eager does (PyTorch's own tests do the same), so
# that dropout values can be compared; it changes nothing else in the code it generates.
torch._inductor.config.fallback_random = True

# Fake-tensor tracing logs every error it meets at ERROR level; the oracle reports the ones
# that matter, and invalid cases raise them on purpose.
logging.getLogger("torch._subclasses.fake_tensor").setLevel(logging.CRITICAL)


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
    counter: AcceptedGraphCounter


@dataclass(frozen=True)
class CaseRun(Runs):
    """A case's runs, with the compiled program they used and what Inductor rewrote."""

    program: CompiledProgram
    rewrites: tuple[str, ...] = ()  # Inductor attention patterns applied while compiling


def load_function(case: Case) -> Callable[..., Any]:
    """Exec the generated source as a real, importable module, as a user's code would be:
    Dynamo imports a function's module by name when it rebuilds a decorated function after
    a graph break. Registered with linecache for tracebacks."""
    source = function_source(case)
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    name = f"sdpa_fuzz_case_{digest}"
    filename = f"<{name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = types.ModuleType(name)
    module.__file__ = filename
    sys.modules[name] = module
    exec(compile(source, filename, "exec"), module.__dict__)
    return module.fn


def compile_program(case: Case, backend: str) -> CompiledProgram:
    """Reset Dynamo, then wrap the case's function in `torch.compile` with a counter."""
    settings = case.compile
    compiler = resolve_backend(backend, settings.mode, settings.dynamic)
    rewrites.prepare(case)
    torch._dynamo.reset()
    counter = AcceptedGraphCounter(compiler)  # type: ignore[arg-type]
    fn = torch.compile(load_function(case), backend=counter, fullgraph=settings.fullgraph,
                       dynamic=settings.dynamic)
    return CompiledProgram(_frozen(fn) if settings.freezing else fn, counter)


def _frozen(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` run with Inductor's freezing on, as a user who sets
    `torch._inductor.config.freezing` runs it: Dynamo reads the flag while tracing (to guard
    parameters by identity), Inductor while compiling. Patched per call, since a worker
    runs other cases after this one."""
    def run(*args: Any, **kwargs: Any) -> Any:
        with torch._inductor.config.patch(freezing=True):
            return fn(*args, **kwargs)
    return run


def marked(case: Case, inputs: dict[str, Any]) -> dict[str, Any]:
    """The compiled call's inputs, with `CompileSpec.mark_dynamic`: their sequence-length
    dims (`marked_dims`) marked dynamic, as a user marks them before calling."""
    for name, dims in marked_dims(case).items():
        for dim in dims:
            torch._dynamo.mark_dynamic(inputs[name], dim)
    return inputs


def _eager_mode(case: Case) -> Callable[[], Any]:
    """The kernel log, except around a torch.nn module: any TorchFunctionMode makes
    `has_torch_function` true, which turns off MultiheadAttention's and the encoder
    layer's fast paths in eager alone (compiled code runs without the mode)."""
    if any(isinstance(spec, ModuleInput) for _, spec in case.inputs):
        return lambda: None
    return KernelLog


def run_case(case: Case, backend: str | None = None, timings: Timings | None = None,
             warm: CompiledProgram | None = None) -> CaseRun:
    """Every call of `case` eagerly, in float64 and compiled, then the first call again.

    Compiles afresh (Dynamo reset first) unless `warm` is given: a program compiled for a
    case that differs from this one only in its seeds, which Dynamo's guards must accept.
    """
    backend = backend or case.compile.backend
    program = warm or compile_program(case, backend)
    patterns = rewrites.snapshot()
    # No fused CUDA kernel takes float64: there the reference computes SDPA by math.
    runs = run_calls(load_function(case), program.fn, lambda: program.counter.frame_count,
                     input_factory(case), calls_of(case), case.backward,
                     mark=lambda inputs: marked(case, inputs), eager_mode=_eager_mode(case),
                     reference_mode=lambda rounded_to=None: ReferenceSDPA(
                         math=case.device == "cuda", rounded_to=rounded_to),
                     record=timings.add if timings is not None else lambda phase, s: None,
                     reused=warm is not None)
    return CaseRun(runs.eager, runs.reference, runs.compiled, runs.rounded, runs.frames, program,
                   rewrites.fired(patterns, rewrites.snapshot()))
