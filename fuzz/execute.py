"""Running a Case: eagerly, in float64, and compiled, each on a fresh identical copy of the inputs.

Everything the oracle needs is captured here as an `Observation` per run; nothing is judged.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import linecache
import logging
import sys
import time
import types
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch._dynamo
import torch._inductor.config
from torch._dynamo.testing import CompileCounterWithBackend
from torch.utils._pytree import tree_flatten_with_path

from torch.nn.attention import SDPBackend, sdpa_kernel

from fuzz import rewrites
from fuzz.backends import resolve_backend
from fuzz.case import DROPOUT_SEED, CallContext, Case, marked_dims
from fuzz.codegen import function_source
from fuzz.kernels import KernelLog, MathSDPA
from fuzz.materialize import input_factory
from fuzz.sdpa_state import BackendState, current_state, restore_state

# Inductor compiles random ops to draw as eager does (PyTorch's own tests do the same), so
# that dropout values can be compared; it changes nothing else in the code it generates.
torch._inductor.config.fallback_random = True

# Fake-tensor tracing logs every error it meets at ERROR level; the oracle reports the ones
# that matter, and invalid cases raise them on purpose.
logging.getLogger("torch._subclasses.fake_tensor").setLevel(logging.CRITICAL)


DEVICE_ERROR_EXIT = 3  # how a worker, or a repro script, ends after a device error


class DeviceError(RuntimeError):
    """The GPU reported an error (an illegal or misaligned address, say). The CUDA context
    is unusable after one, so this is no outcome to compare but the end of the process:
    a worker exits with DEVICE_ERROR_EXIT, which the driver reports as a crash."""


def is_device_error(exc: BaseException) -> bool:
    return type(exc).__name__ == "AcceleratorError" or "CUDA error" in str(exc)


def _synchronize() -> None:
    """Surface a kernel's asynchronous error inside the call that launched it."""
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()


@dataclass(frozen=True)
class Observation:
    """One call of the function: its flat outputs (or the exception) and the world after it.

    `state_after` is read right after the call, still inside the call's outer context, so
    that a leak is not hidden by the outer context restoring its own state.
    """

    leaves: tuple[Any, ...] | None
    paths: tuple[tuple[int, ...], ...] | None  # each leaf's index path in the result
    structure: str | None
    error: BaseException | None
    inputs: dict[str, Any]
    state_after: BackendState
    grads: dict[str, Any] | None = None  # input name -> its gradient (None: unused)
    grad_error: BaseException | None = None  # what backward raised
    kernels: tuple[str, ...] = ()  # the kernel of each SDPA call, where they were logged


def upstream_gradient(leaf: torch.Tensor, index: int, rounded_to: torch.dtype | None = None
                      ) -> torch.Tensor:
    """The seeded gradient flowing into output leaf `index`: the same values in every run,
    rounded to the dtype the case's own runs use (`rounded_to`, for the float64 run)."""
    gen = torch.Generator().manual_seed(7919 * (index + 1))
    g = torch.randn(tuple(leaf.shape), generator=gen).to(rounded_to or leaf.dtype)
    return g.to(device=leaf.device, dtype=leaf.dtype)


def backward(leaves: tuple[Any, ...], inputs: dict[str, Any],
             rounded_to: tuple[torch.dtype, ...] | None = None
             ) -> tuple[dict[str, Any] | None, BaseException | None]:
    """Gradients of every input that requires grad, from the seeded upstream gradients of
    every output that has a grad_fn: (grads by input name, None) or (None, the error)."""
    wanted = [n for n, t in inputs.items() if isinstance(t, torch.Tensor) and t.requires_grad]
    outs = [(i, t) for i, t in enumerate(leaves)
            if isinstance(t, torch.Tensor) and t.grad_fn is not None]
    if not wanted or not outs:
        return {}, None
    try:
        grads = torch.autograd.grad(
            [t for _, t in outs], [inputs[n] for n in wanted],
            [upstream_gradient(t, i, rounded_to[i] if rounded_to else None) for i, t in outs],
            allow_unused=True)
        _synchronize()
    except Exception as exc:  # the outcome of backward is compared too
        if is_device_error(exc):
            raise DeviceError(f"the GPU reported an error in backward: {exc}") from exc
        return None, exc
    return dict(zip(wanted, grads)), None


@dataclass(frozen=True)
class Frames:
    """Dynamo's own accounting, read from a counting backend: graphs compiled by each call,
    then by one more call that repeats the first (same context, equal inputs).

    `reused` says the compiled function was already warm from a case that differs only
    in its seeds, so its calls must compile nothing at all.
    """

    per_call: tuple[int, ...]
    repeat: int
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
    """Per call: eager, float64 reference and compiled observations."""

    eager: tuple[Observation, ...]
    reference: tuple[Observation, ...]
    compiled: tuple[Observation, ...]
    frames: Frames
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


def _outer(context: CallContext) -> contextlib.AbstractContextManager:
    if context.backends is None:
        return contextlib.nullcontext()
    backends = [getattr(SDPBackend, b) for b in context.backends]
    return sdpa_kernel(backends, set_priority=context.set_priority)


def observe(fn: Callable[..., Any], inputs: dict[str, Any], start: BackendState,
            context: CallContext = CallContext(), grad: bool = False,
            rounded_to: tuple[torch.dtype, ...] | None = None,
            mode: torch.overrides.TorchFunctionMode | None = None) -> Observation:
    """Call `fn` once inside `context`, from the `start` backend state; restore it after.
    With `grad`, then run backward from seeded upstream gradients (see `backward`). `mode`
    (eager code only) is active during the call: a `KernelLog` records its kernels."""
    restore_state(start)
    torch.manual_seed(DROPOUT_SEED)  # every run draws the same dropout (docs/oracle.md)
    # Kernel-choice warnings, Dynamo's advice and torch.fx's printout of an error inside a
    # graph are not compared; the outcome itself is.
    with _outer(context), warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            with mode or contextlib.nullcontext():
                result = fn(**inputs)
            _synchronize()
        except Exception as exc:  # the outcome itself is observed
            if is_device_error(exc):
                raise DeviceError(f"the GPU reported an error in a call: {exc}") from exc
            leaves, paths, structure, error = None, None, None, exc
        else:
            flat, spec = tree_flatten_with_path(result)
            leaves = tuple(leaf for _, leaf in flat)
            paths = tuple(tuple(k.idx for k in path) for path, _ in flat)
            structure, error = str(spec), None
        after = current_state()
        grads, grad_error = backward(leaves, inputs, rounded_to) if grad and leaves \
            else (None, None)
    restore_state(start)
    return Observation(leaves, paths, structure, error, inputs, after, grads, grad_error,
                       tuple(mode.kernels) if isinstance(mode, KernelLog) else ())


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
    rewrites.prepare(case)
    torch._dynamo.reset()
    counter = CompileCounterWithBackend(compiler)  # type: ignore[arg-type]
    fn = torch.compile(load_function(case), backend=counter, fullgraph=settings.fullgraph,
                       dynamic=settings.dynamic)
    return CompiledProgram(fn, counter)


def marked(case: Case, inputs: dict[str, Any]) -> dict[str, Any]:
    """The compiled call's inputs, with `CompileSpec.mark_dynamic`: their sequence-length
    dims (`marked_dims`) marked dynamic, as a user marks them before calling."""
    for name, dims in marked_dims(case).items():
        for dim in dims:
            torch._dynamo.mark_dynamic(inputs[name], dim)
    return inputs


def run_case(case: Case, backend: str | None = None, timings: Timings | None = None,
             warm: CompiledProgram | None = None) -> CaseRun:
    """Every call of `case` eagerly, in float64 and compiled, then the first call again.

    Compiles afresh (Dynamo reset first) unless `warm` is given: a program compiled for a
    case that differs from this one only in its seeds, which Dynamo's guards must accept.
    """
    backend = backend or case.compile.backend
    fn = load_function(case)
    make_inputs = input_factory(case)
    start = current_state()
    eager, reference, compiled, per_call = [], [], [], []
    program = warm or compile_program(case, backend)
    patterns = rewrites.snapshot()
    grad = case.backward
    for context in case.calls:
        salt, grow = context.reseed, context.grow
        eager.append(_timed(timings, "eager", lambda: observe(
            fn, make_inputs(salt=salt, grow=grow), start, context, grad, mode=KernelLog())))
        dtypes = tuple(getattr(leaf, "dtype", None) for leaf in eager[-1].leaves or ())
        # No fused CUDA kernel takes float64: there the reference computes SDPA by math.
        math = MathSDPA() if case.device == "cuda" else None
        reference.append(_timed(timings, "reference", lambda: observe(
            fn, make_inputs(torch.float64, salt, grow), start, context, grad, dtypes, math)))
        before, t0 = program.counter.frame_count, time.perf_counter()
        compiled.append(observe(program.fn, marked(case, make_inputs(salt=salt, grow=grow)),
                                start, context, grad))
        per_call.append(program.counter.frame_count - before)
        if timings is not None:  # a call that compiled anything is charged to compilation
            timings.add("compile" if per_call[-1] else "compiled", time.perf_counter() - t0)
    before = program.counter.frame_count
    if compiled[0].error is None:
        _timed(timings, "compiled", lambda: observe(
            program.fn, marked(case, make_inputs(salt=case.calls[0].reseed,
                                                 grow=case.calls[0].grow)), start,
            case.calls[0]))
    frames = Frames(per_call=tuple(per_call), repeat=program.counter.frame_count - before,
                    reused=warm is not None)
    return CaseRun(tuple(eager), tuple(reference), tuple(compiled), frames, program,
                   rewrites.fired(patterns, rewrites.snapshot()))
