"""Calling the function: one observed call, and a case's calls eagerly, in float64 and compiled.

Torch-only, imports from fuzz.sdpa_state alone: a repro script carries this module's source
(`fuzz.carry`), so the fuzzer and the script call the function in one way.
"""

from __future__ import annotations

import contextlib
import io
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch._dynamo.exc import RestartAnalysis
from torch._dynamo.testing import CompileCounterWithBackend
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._pytree import tree_flatten_with_path

from fuzz.sdpa_state import BackendState, current_state, restore_state, settle
from fuzz.terms import GradientTerms

# torch's generator is seeded with this right before every call of the function, eager,
# float64 and compiled alike, so that their dropout draws are the same.
DROPOUT_SEED = 20240607
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


class AcceptedGraphCounter(CompileCounterWithBackend):
    """Dynamo's compile counter, less the graphs the backend threw back: AOTAutograd's
    pass that turns Python scalars into tensors rejects a graph with a symbolic float by
    raising RestartAnalysis, and Dynamo traces the frame again, so an AOTAutograd-based
    backend is handed two graphs for one frame where a plain one is handed one (seen for
    an encoder layer under autocast). The count is then what the backend is made of, not
    what the program does; the frame model counts the graphs a backend accepts."""

    def __init__(self, backend: Any) -> None:
        super().__init__(backend)
        # What Dynamo's BackendCompilerFailed names (`backend='inductor' raised`): the
        # backend under test, not this counter's repr, in a report a maintainer reads.
        self.__name__ = backend if isinstance(backend, str) else getattr(
            backend, "__name__", type(backend).__name__)

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]
                 ) -> Callable[..., Any]:
        try:
            return super().__call__(gm, example_inputs)
        except RestartAnalysis:
            self.frame_count -= 1
            raise


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
    # input name -> the largest sum of its gradient's terms' magnitudes (`fuzz.terms`),
    # where tracked (the float64 reference)
    grad_terms: dict[str, float] = field(default_factory=dict)
    grad_error: BaseException | None = None  # what backward raised
    kernels: tuple[str, ...] = ()  # the kernel of each SDPA call, where they were logged
    operands: tuple[tuple[Any, ...], ...] = ()  # each SDPA call's query, key and value,
    # where they were logged (the float64 reference)
    products: int = 0  # the matrix products the program wrote, where they were counted


@dataclass(frozen=True)
class Frames:
    """Dynamo's own accounting, read from a counting backend: graphs compiled by each call,
    then by one more call that repeats the first (same context, equal inputs).

    `reused` says the compiled function was already warm from a case that differs only
    in its seeds, so its calls must compile nothing at all.
    """

    per_call: tuple[int, ...]
    repeat: int
    reused: bool = False


@dataclass(frozen=True)
class Call:
    """One call of the function: its outer `sdpa_kernel` context (`backends` None: none),
    grad mode and autocast dtype, and which seed variant (`salt`) and length growth
    (`grow`) its inputs have."""

    backends: tuple[str, ...] | None = None
    set_priority: bool = False
    salt: int = 0
    grow: int = 0
    grad_mode: str = "default"
    autocast: str | None = None


def upstream_gradient(leaf: torch.Tensor, index: int, rounded_to: torch.dtype | None = None
                      ) -> torch.Tensor:
    """The seeded gradient flowing into output leaf `index`: the same values in every run,
    rounded to the dtype the case's own runs use (`rounded_to`, for the float64 run)."""
    gen = torch.Generator().manual_seed(7919 * (index + 1))
    g = torch.randn(tuple(leaf.shape), generator=gen).to(rounded_to or leaf.dtype)
    return g.to(device=leaf.device, dtype=leaf.dtype)


def backward(leaves: tuple[Any, ...], inputs: dict[str, Any],
             rounded_to: tuple[torch.dtype, ...] | None = None, terms: bool = False
             ) -> tuple[dict[str, Any] | None, BaseException | None, dict[str, float]]:
    """Gradients of every input that requires grad, from the seeded upstream gradients of
    every output that has a grad_fn: (grads by input name, None) or (None, the error);
    with `terms`, and the largest sum of each gradient's terms' magnitudes
    (`fuzz.terms.GradientTerms`)."""
    wanted = [n for n, t in inputs.items() if isinstance(t, torch.Tensor) and t.requires_grad]
    outs = [(i, t) for i, t in enumerate(leaves)
            if isinstance(t, torch.Tensor) and t.grad_fn is not None]
    if not wanted or not outs:
        return {}, None, {}
    mode = GradientTerms() if terms else None
    try:
        with mode or contextlib.nullcontext():
            grads = torch.autograd.grad(
                [t for _, t in outs], [inputs[n] for n in wanted],
                [upstream_gradient(t, i, rounded_to[i] if rounded_to else None)
                 for i, t in outs], allow_unused=True)
        _synchronize()
    except Exception as exc:  # the outcome of backward is compared too
        if is_device_error(exc):
            raise DeviceError(f"the GPU reported an error in backward: {exc}") from exc
        return None, exc, {}
    found = {n: mode.terms(g).max().item() for n, g in zip(wanted, grads)
             if mode is not None and g is not None and g.numel()}
    return dict(zip(wanted, grads)), None, found


def _outer(call: Call, device: str) -> contextlib.ExitStack:
    """The call's contexts, entered: `sdpa_kernel`, grad mode, autocast. The float64
    reference gets them too; autocast casts no float64 op, so it stays the truth."""
    stack = contextlib.ExitStack()
    if call.backends is not None:
        stack.enter_context(sdpa_kernel([getattr(SDPBackend, b) for b in call.backends],
                                        set_priority=call.set_priority))
    if call.grad_mode != "default":
        stack.enter_context(getattr(torch, call.grad_mode)())
    if call.autocast is not None:
        stack.enter_context(torch.autocast(device, dtype=getattr(torch, call.autocast)))
    return stack


def observe(fn: Callable[..., Any], inputs: dict[str, Any], start: BackendState,
            call: Call = Call(), grad: bool = False,
            rounded_to: tuple[torch.dtype, ...] | None = None,
            mode: torch.overrides.TorchFunctionMode | None = None,
            terms: bool = False) -> Observation:
    """Call `fn` once inside `call`'s context, from the `start` backend state; restore it
    after. With `grad`, then run backward from seeded upstream gradients (`backward`),
    with `terms` tracking the magnitudes each gradient sums.
    `mode` (eager code only) is active during the call: a kernel log records its kernels
    in a `kernels` list, the reference's log each SDPA call's operands in `operands`."""
    restore_state(start)
    torch.manual_seed(DROPOUT_SEED)  # every run draws the same dropout (docs/oracle.md)
    # Kernel-choice warnings, Dynamo's advice and torch.fx's printout of an error inside a
    # graph are not compared; the outcome itself is.
    device = next((t.device.type for t in inputs.values() if isinstance(t, torch.Tensor)), "cpu")
    with _outer(call, device), warnings.catch_warnings(), \
            contextlib.redirect_stderr(io.StringIO()):
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
        grads, grad_error, grad_terms = backward(leaves, inputs, rounded_to, terms) \
            if grad and leaves else (None, None, {})
    restore_state(start)
    return Observation(leaves, paths, structure, error, inputs, after, grads, grad_terms,
                       grad_error,
                       tuple(getattr(mode, "kernels", ())),
                       tuple(getattr(mode, "operands", ())), getattr(mode, "products", 0))


@dataclass(frozen=True)
class Runs:
    """Per call: eager, float64 reference and compiled observations, the float64 run with
    SDPA's operands rounded (`operand_rounding`; None where not run), and the frame counts."""

    eager: tuple[Observation, ...]
    reference: tuple[Observation, ...]
    compiled: tuple[Observation, ...]
    rounded: tuple[Observation | None, ...]
    frames: Frames


def operand_rounding(eager: Observation, reference: Observation, autocast: str | None = None
                     ) -> torch.dtype | None:
    """The dtype to round the float64 run's SDPA operands and matrix products to, and to
    move its other results by (`RoundingJitter`), where eager's outputs are floating and
    the program computes operands that dtype cannot
    hold exactly (a projection, a rotary embedding) or materializes products in it (the
    scores of hand-written attention): rounding them is then an error any implementation
    makes, yet the kernels work in float32, so the score floor does not cover it. A float16
    layer whose eager error was 0.0025 by luck had 0.0091 from rounding its operands once;
    a bfloat16 hand-written attention, 0.018 by luck against 0.077 Inductor's, which
    rounds the scores `q @ k^T` and divides them in float32. A float32 encoder layer
    (tiny inputs, a layer norm first) was held to 3 times eager's 0.00041 in a norm's
    weight gradient; Inductor's was 0.0024. In float64 the run only moves results (its
    rounding changes nothing) and is made where an operand is computed, not an input's
    view: two chained float64 model layers' weight gradient (magnitude 148) differed by
    1.7e-11 between SDPA's CPU flash and math kernels, and Inductor's by 1.0e-11 was held
    to 3.4e-12, eager being the float64 run itself. Under `autocast` (the dtype it computes
    in), a program that returns float32 computed in that dtype."""
    dtypes = [t.dtype for t in eager.leaves or () if isinstance(t, torch.Tensor)
              and t.dtype.is_floating_point]
    if not dtypes or not (reference.operands or reference.products):
        return None
    dtype = max(dtypes, key=lambda d: torch.finfo(d).eps)
    if autocast is not None and dtype != torch.float64:
        dtype = max(dtype, getattr(torch, autocast), key=lambda d: torch.finfo(d).eps)
    if dtype == torch.float64:
        inputs = {t.untyped_storage().data_ptr() for t in reference.inputs.values()
                  if isinstance(t, torch.Tensor)}
        computed = any(t.untyped_storage().data_ptr() not in inputs
                       for operands in reference.operands for t in operands)
        return dtype if reference.products or computed else None
    inexact = reference.products or any(not torch.equal(t, t.to(dtype).to(t.dtype))
                                        for operands in reference.operands for t in operands)
    return dtype if inexact else None


def run_calls(fn: Callable[..., Any], compiled_fn: Callable[..., Any],
              frame_count: Callable[[], int], make_inputs: Callable[..., dict[str, Any]],
              calls: tuple[Call, ...], grad: bool,
              mark: Callable[[dict[str, Any]], dict[str, Any]] = lambda inputs: inputs,
              eager_mode: Callable[[], Any] = lambda: None,
              reference_mode: Callable[..., Any] = lambda rounded_to=None: None,
              record: Callable[[str, float], None] = lambda phase, seconds: None,
              reused: bool = False) -> Runs:
    """Every call eagerly, in float64 and compiled (on its own fresh copy of the inputs,
    `mark`ed as a user marks dynamic dims), then the first call once more, compiled.
    Where `operand_rounding` asks for it, the float64 run again with `reference_mode`'s
    SDPA operands rounded.
    `frame_count` reads the compile counter; `record(phase, seconds)` gets each phase's
    time, a compiled call that compiled anything charged to "compile"."""
    def timed(phase: str, thunk: Callable[[], Observation]) -> Observation:
        t0 = time.perf_counter()
        try:
            return thunk()
        finally:
            record(phase, time.perf_counter() - t0)

    for device in {t.device for t in make_inputs().values() if isinstance(t, torch.Tensor)}:
        settle(device)
    start = current_state()
    eager, reference, compiled, rounded, per_call = [], [], [], [], []
    for call in calls:
        eager.append(timed("eager", lambda: observe(
            fn, make_inputs(salt=call.salt, grow=call.grow), start, call, grad,
            mode=eager_mode())))
        dtypes = tuple(getattr(leaf, "dtype", None) for leaf in eager[-1].leaves or ())
        reference.append(timed("reference", lambda: observe(
            fn, make_inputs(torch.float64, call.salt, call.grow), start, call, grad, dtypes,
            reference_mode(), terms=True)))
        dtype = operand_rounding(eager[-1], reference[-1], call.autocast)
        rounded.append(None if dtype is None else timed("reference", lambda: observe(
            fn, make_inputs(torch.float64, call.salt, call.grow), start, call, grad, dtypes,
            reference_mode(dtype))))
        before, t0 = frame_count(), time.perf_counter()
        compiled.append(observe(compiled_fn, mark(make_inputs(salt=call.salt, grow=call.grow)),
                                start, call, grad))
        per_call.append(frame_count() - before)
        record("compile" if per_call[-1] else "compiled", time.perf_counter() - t0)
    before = frame_count()
    if compiled[0].error is None:
        first = calls[0]
        timed("compiled", lambda: observe(
            compiled_fn, mark(make_inputs(salt=first.salt, grow=first.grow)), start, first))
    frames = Frames(tuple(per_call), frame_count() - before, reused)
    return Runs(tuple(eager), tuple(reference), tuple(compiled), tuple(rounded), frames)
