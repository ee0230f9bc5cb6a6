"""sdpa-fuzz repro: runs fn eagerly, compiled and in float64 on identical inputs, once
per call, and compares outputs, identities, inputs after the call, the global SDPA
backend state and Dynamo's frame counts, with sdpa-fuzz's own checker (below).

Exit status 1 while a divergence holds, 0 once it is gone."""
from __future__ import annotations

import sys
import torch
import torch.nn.functional as F


def fn(q, k, v, mask):
    out1 = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.backends.cuda.enable_math_sdp(False)
    return q

import torch


def build_tensor(shape, dtype, values, layout, seed, perm=(), expand_dim=0,
                 requires_grad=False, device="cpu"):
    """Draw values on a seeded CPU generator, cast, then lay them out in memory as asked."""
    import torch

    shape = tuple(shape)
    gen = torch.Generator().manual_seed(seed)
    dtype = getattr(torch, dtype)
    base_shape = list(shape)
    if layout == "expanded":
        base_shape[expand_dim] = 1
    if values in ("random", "full_rows", "additive"):
        keep = torch.rand(base_shape, generator=gen) < 0.7
        if values == "full_rows":
            keep[..., 0, :] = False
        bias = torch.randn(base_shape, generator=gen) * 0.5
        if not dtype.is_floating_point:  # bool or integer: 1 attends, 0 does not
            base = keep.to(dtype)
        elif values == "additive":
            base = bias.to(dtype)
        else:
            base = bias.masked_fill(~keep, float("-inf")).to(dtype)
    else:
        magnitude = {"normal": 1.0, "tiny": 1e-4, "large": 30.0, "repeated": 1.0}[values]
        if values == "repeated":
            row_shape = base_shape[:-2] + [1, base_shape[-1]]
            base = torch.randn(row_shape, generator=gen).expand(base_shape).contiguous()
        else:
            base = torch.randn(base_shape, generator=gen) * magnitude
        base = base.to(dtype)
    base = base.to(device)
    if layout == "expanded":
        out = base.expand(shape)
    elif layout == "transposed":
        out = base.transpose(-1, -2).contiguous().transpose(-1, -2)
    elif layout == "permuted":
        inverse = [perm.index(d) for d in range(len(shape))]
        out = base.permute(*perm).contiguous().permute(*inverse)
    elif layout == "offset":
        storage = torch.zeros(base.numel() + 3, dtype=dtype, device=device)
        storage[3:] = base.flatten()
        out = storage[3:].view(shape)
    elif layout == "strided":
        storage = torch.zeros(shape[:-1] + (2 * shape[-1],), dtype=dtype, device=device)
        storage[..., ::2] = base
        out = storage[..., ::2]
    else:
        out = base
    out = out.detach()
    return out.requires_grad_() if requires_grad else out


def grown(shape, marks, grow):
    """`shape` with `grow` added to the dims `marks` flags: a call of another size."""
    return tuple(d + grow * m for d, m in zip(shape, marks))


def reseed(seed: int, salt: int) -> int:
    """An input's seed in seed variant `salt` (salt 0: the seed itself)."""
    return (seed + salt * 0x9E3779B1) % 2**63


def make_inputs(dtype=None, salt=0, grow=0):
    t = {
        'q': build_tensor((1, 1, 1), 'float32', 'normal', 'contiguous', reseed(0, salt)),
        'k': build_tensor((1, 1, 1), 'float32', 'normal', 'contiguous', reseed(0, salt)),
        'v': build_tensor((1, 1, 1), 'float32', 'normal', 'contiguous', reseed(0, salt)),
        'mask': build_tensor((1, 1), 'bool', 'random', 'contiguous', reseed(0, salt)),
    }
    if dtype is not None:
        t = {n: x.detach().to(dtype).requires_grad_(x.requires_grad)
             if x.is_floating_point() else x
             for n, x in t.items()}
    return t

from torch.overrides import TorchFunctionMode


class MathSDPA(TorchFunctionMode):
    """Computes every SDPA call with the math kernel, whatever the backend state: the
    float64 reference on CUDA, where no fused kernel takes float64, so that a context
    enabling only fused kernels would otherwise leave no reference at all. Self-contained
    (torch only): repro scripts embed its source."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is not torch.nn.functional.scaled_dot_product_attention:
            return func(*args, **kwargs)
        kwargs.update(zip(("query", "key", "value", "attn_mask", "dropout_p", "is_causal"),
                          args))
        mask = kwargs.get("attn_mask")
        if mask is not None and mask.dtype == torch.bool:  # as SDPA does before any kernel
            kwargs["attn_mask"] = torch.zeros_like(mask, dtype=kwargs["query"].dtype
                                                   ).masked_fill(~mask, float("-inf"))
        return torch.ops.aten._scaled_dot_product_attention_math(**kwargs)[0]

FUSED = ('flash', 'efficient', 'cudnn')


# --- fuzz.sdpa_state ----------------------------------------------------------

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


def settle(device: torch.device) -> None:
    """Let CUDA torch choose its default priority order before any state is captured.

    It does so lazily, at the first SDPA dispatch in a process (`priority_order` in
    sdp_utils.cpp puts cuDNN first where `check_prefer_cudnn_attention` holds, as on an
    H100 or H200). A state captured before that dispatch and restored after it would
    undo torch's choice for good, and the first case of every process would see a
    priority change that no compiled code made. One dispatch choice on a tiny input
    settles it; it runs no kernel."""
    if device.type == "cuda":
        q = torch.zeros(1, 1, 1, 8, device=device, dtype=torch.float16)
        torch._fused_sdp_choice(q, q, q)


# --- fuzz.errors --------------------------------------------------------------

import builtins
import os
import re
import traceback

import torch

_TORCH_DIR = os.path.dirname(torch.__file__)
# Where an AssertionError means the compiler's own invariant broke, not the user's input.
_COMPILER_DIRS = tuple(os.path.join(_TORCH_DIR, p) for p in (
    "_dynamo", "_inductor", "_functorch", "_subclasses", "fx", "_guards.py",
    "_higher_order_ops", "_export", "export"))
# Graph breaks whose cause is a genuine user-level error met while tracing.
_SEE_THROUGH = {"RuntimeError when making fake tensor call",
                "TypeError when making fake tensor call",
                "RuntimeError when trying to get real value from fx.Node",
                "Observed exception"}
_FX_NODE_FAILED = "Dynamo failed to run FX node"


def _compiler_failures():
    from torch._dynamo import exc as dx
    from torch._subclasses import fake_tensor as ft
    from torch.fx.experimental import symbolic_shapes as ss
    found = [dx.BackendCompilerFailed, dx.InternalTorchDynamoError,
             dx.ResumePrologueTracingError, dx.RestartAnalysis,
             dx.UnknownPropertiesDuringBackwardTrace, ft.UnsupportedFakeTensorException,
             ft.DynamicOutputShapeException, ft.DataDependentOutputException,
             ft.UnsupportedOperatorException, ft.MetadataMismatchError,
             ss.GuardOnDataDependentSymNode]
    try:
        from torch._inductor import exc as ix
        found += [ix.OperatorIssue, ix.CppCompileError]
    except ImportError:
        pass
    return tuple(found)


def _raised_in_compiler(exc):
    frames = [frame for frame, _ in traceback.walk_tb(exc.__traceback__)]
    if not frames:
        return False
    path = os.path.abspath(frames[-1].f_code.co_filename)
    return path.startswith(_COMPILER_DIRS) or "torchinductor_" in path


def _observed_type(exc):
    from torch._dynamo import exc as dx
    for builtin, observed in dx.observed_exception_map.items():
        if type(exc) is observed:
            return builtin
    match = re.fullmatch(r"Observed(\w+?)(Error)?", type(exc).__name__)
    return getattr(builtins, match.group(1) + "Error", type(exc)) if match else type(exc)


def _root(exc):
    for _ in range(16):
        inner = getattr(exc, "inner_exception", None) or exc.__cause__ or exc.__context__
        if inner is None or inner is exc:
            break
        exc = inner
    return exc


def unwrap(exc):
    """(kind, innermost exception, the type to compare): kind is `user` (an error a user
    sees in eager too), `compiler` (the compiler failed: its innermost error is kept, to
    tell one failure from another) or `unsupported` (Dynamo refused the program)."""
    from torch._dynamo import exc as dx
    failures = _compiler_failures()
    for _ in range(64):
        if isinstance(exc, failures):
            root = _root(exc)
            return "compiler", root, type(root)
        if isinstance(exc, dx.TorchRuntimeError):
            inner = exc.__cause__ or exc.__context__
            if inner is None:
                return "user", exc, RuntimeError
            exc = inner
        elif isinstance(exc, dx.ObservedException):
            return "user", exc, _observed_type(exc)
        elif isinstance(exc, dx.Unsupported):
            if getattr(exc, "gb_type", None) in _SEE_THROUGH and exc.__cause__ is not None:
                exc = exc.__cause__
            else:
                return "unsupported", exc, type(exc)
        elif isinstance(exc, (dx.TorchDynamoException, dx.FailOnRecompileLimitHit)):
            return "unsupported", exc, type(exc)
        elif (type(exc) is RuntimeError and str(exc).startswith(_FX_NODE_FAILED)
              and exc.__cause__ is not None):
            exc = exc.__cause__
        elif isinstance(exc, AssertionError) and _raised_in_compiler(exc):
            return "compiler", exc, type(exc)
        else:
            return "user", exc, type(exc)
    return "compiler", exc, type(exc)


def same_error(eager, compiled):
    """Whether compiled raised the error eager raised: a user-facing error of exactly
    eager's type, once Dynamo's wrappers are seen through. A compiler failure never is.
    Dynamo turns `assert cond, msg` on a tensor into a RuntimeError with the same text."""
    kind, inner, kind_type = unwrap(compiled)
    if kind != "user":
        return False
    _, eager_inner, eager_type = unwrap(eager)
    if eager_type is AssertionError and kind_type is RuntimeError:
        return str(eager_inner) == str(inner)
    return kind_type is eager_type


_MESSAGE_SUBSTITUTIONS = [
    (re.compile(r"FakeTensor\(.*?\)"), "T"),
    (re.compile(r"torch\.Size\(\[[^\]]*\]\)"), "S"),
    (re.compile(r"\[[^\[\]]*\]"), "S"),
    (re.compile(r"\((?=[^)]*\d)[\d\s,\-]*\)"), "S"),
    (re.compile(r"torch\.\w+"), "D"),
    (re.compile(r"\b(?:unsigned |signed )?(?:long int|long|int|short|char|float|double|half|"
                r"bool|bfloat16|BFloat16|Half|Float|Double|Long|Int|Bool|c10::\w+|"
                r"complex\w*|u?int\d+|float\d+)\b"), "D"),
    (re.compile(r"'[^']*'|\"[^\"]*\"|`[^`]*`"), "Q"),
    (re.compile(r"\b\w*\d\w*\b"), "N"),
    (re.compile(r"\s+"), " "),
]


def message_class(exc):
    """The first line of the message with what varies between cases of one error taken
    out (shapes, dtypes, quoted names, numbers and numbered names), so that an error keeps
    its class as its case shrinks, and two errors rarely share one."""
    lines = str(exc).strip().splitlines()
    text = re.sub(r"^\w+(Error|Exception): ", "", lines[0] if lines else "")
    for pattern, token in _MESSAGE_SUBSTITUTIONS:
        text = pattern.sub(token, text)
    return text.strip().lower()[:100]


# --- fuzz.tolerance -----------------------------------------------------------

from dataclasses import dataclass

import torch


EPS = {"float64": 2.0**-52, "float32": 2.0**-23, "bfloat16": 2.0**-7, "float16": 2.0**-10}
FUDGE = {"float64": 3.0, "float32": 3.0, "bfloat16": 3.0, "float16": 3.0}
FLOOR = {"float64": 8 * EPS["float64"], "float32": 8 * EPS["float32"],
         "bfloat16": EPS["bfloat16"] / 2, "float16": EPS["float16"] / 2}
SCORE_FLOOR = {"float64": 8 * EPS["float64"], "float32": 8 * EPS["float32"],
               "bfloat16": 8 * EPS["float32"], "float16": 8 * EPS["float32"]}
# The spacing of the dtype's subnormals: below the smallest normal number, rounding is
# absolute, so a floor relative to the output's magnitude alone would allow no rounding
# at all there. The absolute floor is that spacing times 8 for float64 and float32, and
# one whole step (not the half of FLOOR) for the 16-bit dtypes: a hand-written float16
# program was seen one subnormal step from float64 where eager was exact (docs/oracle.md).
SUBNORMAL = {"float64": 2.0**-1074, "float32": 2.0**-149, "bfloat16": 2.0**-133,
             "float16": 2.0**-24}
ABS_FLOOR = {"float64": 8 * SUBNORMAL["float64"], "float32": 8 * SUBNORMAL["float32"],
             "bfloat16": SUBNORMAL["bfloat16"], "float16": SUBNORMAL["float16"]}
TINY = 1e-300
# The fused CUDA kernels' backward sums the query's (and with GQA the key's and value's)
# gradient with atomics in no fixed order, so two runs of one kernel on equal inputs
# differ, and eager's error is one draw of a spread that compiled draws again. PyTorch's
# own tests allow these gradients 8 (value) to 160 (query) times the error of math at low
# precision (test_transformers.py); against the same kernel's own eager run, 8 suffices.
FUSED_GRAD_FUDGE = 8.0


@dataclass(frozen=True)
class ErrorMeasure:
    """Errors of eager and compiled against the reference, and the bound compiled must meet."""

    eager: float
    compiled: float
    base: float
    fudge: float

    @property
    def allowed(self) -> float:
        return self.fudge * self.base

    @property
    def ratio(self) -> float:
        """compiled error / max(eager error, floor): the quantity the fudge factor bounds."""
        return self.compiled / self.base

    @property
    def passes(self) -> bool:
        return self.compiled <= self.allowed


def fudge(dtype: str, kernels: tuple[str, ...] = (), gradient: bool = False) -> float:
    """The factor for a value of `dtype` from a program whose SDPA ran `kernels` in eager."""
    fused = gradient and any(k in FUSED for k in kernels)
    return max(FUDGE[dtype], FUSED_GRAD_FUDGE) if fused else FUDGE[dtype]


def score_conditioning(query: torch.Tensor, key: torch.Tensor, scale: float | None) -> float:
    """An upper bound on sum_i |scale * q_i * k_i| over the score dot products (the worst
    query row's; `row_conditioning` gives each row's).

    Any implementation computing the scores in a given precision may be off by about eps
    times this, and softmax passes that absolute error on to the output; so two correct
    implementations can differ by that much however accurate one of them happens to be.
    """
    q, k = query.detach().double().abs(), key.detach().double().abs()
    if q.numel() == 0 or k.numel() == 0:
        return 1.0
    s = abs(scale) if scale is not None else q.size(-1) ** -0.5
    return s * q.sum(-1).max().item() * k.max().item()


def row_conditioning(query: torch.Tensor, key: torch.Tensor, scale: float | None
                     ) -> torch.Tensor:
    """`score_conditioning` for each query row, shaped (..., L, 1) to broadcast over the
    output's rows: a row's scores, and so its output row, carry rounding of eps times
    its own bound, not the worst row's."""
    q, k = query.detach().double().abs(), key.detach().double().abs()
    s = abs(scale) if scale is not None else q.size(-1) ** -0.5
    return s * q.sum(-1, keepdim=True) * (k.max() if k.numel() else 0.0)


def coarsest(dtype: str, precision: str | None) -> str:
    """The less precise of an output's dtype and the precision its program casts through."""
    return dtype if precision is None or EPS[precision] <= EPS[dtype] else precision


def measure(eager: torch.Tensor, compiled: torch.Tensor, reference: torch.Tensor,
            conditioning: float | torch.Tensor = 1.0, precision: str | None = None,
            terms: float = 0.0, factor: float | None = None) -> ErrorMeasure | None:
    """Max-abs errors: eager's over the positions finite in all three, compiled's over
    those where it and the reference are finite (including where eager overflowed); None
    when there are none. `conditioning`: the score conditioning, one number, or one per
    output row (a tensor that broadcasts to the output with a trailing dim of 1); per row,
    each row's floor is its own conditioning times its own magnitude, and the measure is
    that of the worst row. `precision`: the coarsest dtype the program casts its values
    through, which rounds the float64 run too, so that it bounds what any implementation
    can be held to. `terms`: for a gradient, the bound on the magnitude of the terms
    summed into it (`gradient_bounds`), which takes the place of the output's magnitude
    in the score floor. `factor`: the fudge factor, if not the dtype's own (`fudge`)."""
    e, c, r = eager.detach().double(), compiled.detach().double(), reference.detach().double()
    ok_c = torch.isfinite(c) & torch.isfinite(r)
    ok = ok_c & torch.isfinite(e)
    if not bool(ok_c.any()):
        return None
    err_e = (e[ok] - r[ok]).abs().max().item() if bool(ok.any()) else 0.0
    dtype = coarsest(str(eager.dtype).removeprefix("torch."), precision)
    fudge = FUDGE[dtype] if factor is None else factor
    least = max(err_e, SCORE_FLOOR[dtype] * terms, ABS_FLOOR[dtype], TINY)
    if isinstance(conditioning, torch.Tensor):
        magnitude = torch.where(ok_c, r.abs(), 0.0).amax(-1, keepdim=True)
        relative = torch.clamp(SCORE_FLOOR[dtype] * conditioning.double(), min=FLOOR[dtype])
        base = torch.clamp(relative * magnitude, min=least).expand_as(r)
        err = torch.where(ok_c, (c - r).abs(), 0.0)
        worst = int((err / base).flatten().argmax())
        return ErrorMeasure(eager=err_e, compiled=err.flatten()[worst].item(),
                            base=base.flatten()[worst].item(), fudge=fudge)
    err_c = (c[ok_c] - r[ok_c]).abs().max().item()
    floor = max(FLOOR[dtype], SCORE_FLOOR[dtype] * conditioning) * r[ok_c].abs().max().item()
    return ErrorMeasure(eager=err_e, compiled=err_c, base=max(floor, least), fudge=fudge)


def measure_exact(eager: torch.Tensor, compiled: torch.Tensor, ops: int) -> ErrorMeasure | None:
    """For a value no attention feeds (an input after its mutations, a shifted input):
    compiled against eager itself, allowed `ops` ulps of the dtype at eager's largest
    magnitude, one per elementwise op that may round differently (a fused chain rounds
    once where eager rounds after each op; a contracted multiply-add, once for two). No
    conditioning, no float64: both ran the same few exact-as-possible ops."""
    e, c = eager.detach().double(), compiled.detach().double()
    ok = torch.isfinite(e) & torch.isfinite(c)
    if not bool(ok.any()):
        return None
    dtype = str(eager.dtype).removeprefix("torch.")
    err = (c[ok] - e[ok]).abs().max().item()
    base = max(ops * EPS[dtype] * e[ok].abs().max().item(), ops * SUBNORMAL[dtype], TINY)
    return ErrorMeasure(eager=0.0, compiled=err, base=base, fudge=1.0)


def gradient_bounds(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                    scale: float | None, upstream: float) -> dict[str, float]:
    """Per input role, a bound on the sum of the magnitudes of the terms that attention's
    backward adds up to one element of its gradient.

    A gradient is a sum with cancellation (`dS = P * (dP - rowsum(dP * P))`), so its own
    magnitude says nothing about the rounding in it; the terms' magnitudes do. With
    `dP[i, j] = g[i] . v[j]` bounded by `D = |g| * max_j sum|v[j]|` and `|dS[i, j]| <=
    2 D P[i, j]`, and since every row of P sums to 1 whatever the mask: the query's terms
    sum to at most `2 |scale| D max|k|` (no factor of S: the row's weights share the 1;
    times the copies where a query broadcasts over the key's batch).
    A column of P sums to at most L (to G L where G query heads share a key head), which
    is all that is known without the mask: the key's terms by `2 |scale| G L D max|q|`,
    the value's by `G L |g|`; an additive mask's element is one term of `dS`, `2 D`. Any
    implementation computing in a precision may be off by about its eps times these.
    """
    q, k, v = (t.detach().double().abs() for t in (query, key, value))
    if min(q.numel(), k.numel(), v.numel()) == 0:
        return {}
    s = abs(scale) if scale is not None else q.size(-1) ** -0.5
    L = q.size(-2)
    rows_q = q.numel() // max(1, q.size(-1) * L)  # batch x heads
    rows_k = k.numel() // max(1, k.size(-1) * k.size(-2))
    group, q_group = max(1, rows_q // max(1, rows_k)), max(1, rows_k // max(1, rows_q))
    d_p = upstream * v.sum(-1).max().item()
    return {"query": 2 * s * q_group * d_p * k.max().item(),
            "key": 2 * s * group * L * d_p * q.max().item(),
            "value": group * L * upstream, "mask": 2 * d_p}


# --- fuzz.calls ---------------------------------------------------------------

import contextlib
import io
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._pytree import tree_flatten_with_path


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
    and which seed variant (`salt`) and length growth (`grow`) its inputs have."""

    backends: tuple[str, ...] | None = None
    set_priority: bool = False
    salt: int = 0
    grow: int = 0


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


def _outer(call: Call) -> contextlib.AbstractContextManager:
    if call.backends is None:
        return contextlib.nullcontext()
    return sdpa_kernel([getattr(SDPBackend, b) for b in call.backends],
                       set_priority=call.set_priority)


def observe(fn: Callable[..., Any], inputs: dict[str, Any], start: BackendState,
            call: Call = Call(), grad: bool = False,
            rounded_to: tuple[torch.dtype, ...] | None = None,
            mode: torch.overrides.TorchFunctionMode | None = None) -> Observation:
    """Call `fn` once inside `call`'s context, from the `start` backend state; restore it
    after. With `grad`, then run backward from seeded upstream gradients (`backward`).
    `mode` (eager code only) is active during the call: a kernel log records its kernels
    in a `kernels` list."""
    restore_state(start)
    torch.manual_seed(DROPOUT_SEED)  # every run draws the same dropout (docs/oracle.md)
    # Kernel-choice warnings, Dynamo's advice and torch.fx's printout of an error inside a
    # graph are not compared; the outcome itself is.
    with _outer(call), warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
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
                       tuple(getattr(mode, "kernels", ())))


@dataclass(frozen=True)
class Runs:
    """Per call: eager, float64 reference and compiled observations, and the frame counts."""

    eager: tuple[Observation, ...]
    reference: tuple[Observation, ...]
    compiled: tuple[Observation, ...]
    frames: Frames


def run_calls(fn: Callable[..., Any], compiled_fn: Callable[..., Any],
              frame_count: Callable[[], int], make_inputs: Callable[..., dict[str, Any]],
              calls: tuple[Call, ...], grad: bool,
              mark: Callable[[dict[str, Any]], dict[str, Any]] = lambda inputs: inputs,
              eager_mode: Callable[[], Any] = lambda: None,
              reference_mode: Callable[[], Any] = lambda: None,
              record: Callable[[str, float], None] = lambda phase, seconds: None,
              reused: bool = False) -> Runs:
    """Every call eagerly, in float64 and compiled (on its own fresh copy of the inputs,
    `mark`ed as a user marks dynamic dims), then the first call once more, compiled.
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
    eager, reference, compiled, per_call = [], [], [], []
    for call in calls:
        eager.append(timed("eager", lambda: observe(
            fn, make_inputs(salt=call.salt, grow=call.grow), start, call, grad,
            mode=eager_mode())))
        dtypes = tuple(getattr(leaf, "dtype", None) for leaf in eager[-1].leaves or ())
        reference.append(timed("reference", lambda: observe(
            fn, make_inputs(torch.float64, call.salt, call.grow), start, call, grad, dtypes,
            reference_mode())))
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
    return Runs(tuple(eager), tuple(reference), tuple(compiled), frames)


# --- fuzz.check ---------------------------------------------------------------

import math
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch._dynamo.exc import Unsupported
from torch.backends.cuda import SDPAParams


# What a kernel computes or refuses. The other checks (backend state, frames, identity,
# mutations) are Dynamo's, the same whichever kernel runs, and keep one signature.
KERNEL_CHECKS = ("outcome", "values", "nan-inf", "metadata", "stride")
# Checks whose condition is the dtype of the value compared: a symptom, not the bug.
NUMERIC_CHECKS = ("values", "nan-inf", "metadata", "stride", "mutation")
DTYPE_CONDITIONS = ("float64", "float32", "bfloat16", "float16", "bool", "int64", "int32",
                    "uint8")
LATER = "later-call"


def compose_key(check: str, where: str, condition: str, message: str, kernels: str,
                later: bool) -> str:
    """A failure's key (`fuzz.identity`): its signature less the symptoms (a dtype, the
    rewrite pattern). `message` is kept only where compiled raised, since it then says how
    the compiler failed; where only eager raised, it says why the input is invalid, which
    is the case's business: its features tell those bugs apart."""
    kind = "" if check in NUMERIC_CHECKS and condition in DTYPE_CONDITIONS else condition
    message = "" if condition.startswith("eager-raised-") else message
    return (f"{check}:{where}" + (f":{kind}" if kind else "")
            + (f"~{message}" if message else "") + (f"@{kernels}" if kernels else "")
            + (f"@{LATER}" if later else ""))


@dataclass(frozen=True)
class Failure:
    """One failed check. `call` is the index of the call it happened in: a failure first
    seen in a later call (a different outer context, or a reused compiled function) has a
    signature of its own, whichever later call it was."""

    check: str
    where: str
    condition: str
    detail: str
    call: int = 0
    rewrite: str = ""  # the Inductor attention replacements that fired (`sfdp5`)
    kernels: str = ""  # on CUDA, for what a kernel computes: the kernels eager ran
    message: str = ""  # for an outcome: the class of the innermost error's message

    @property
    def signature(self) -> str:
        """What a reader sees: check, site, condition and every tag."""
        tags = "".join(f"@{t}" for t in (self.rewrite, self.kernels) if t)
        later = f"@{LATER}" if self.call else ""
        return f"{self.check}:{self.where}:{self.condition}{tags}{later}"

    @property
    def key(self) -> str:
        """What identifies the bug together with a case's features (`fuzz.identity`)."""
        return compose_key(self.check, self.where, self.condition, self.message,
                           self.kernels, bool(self.call))


@dataclass(frozen=True)
class Scores:
    """One attention's score computation: its operands by name, the scale it applies
    (None: SDPA's default) and the permutation a hand-written form applies first."""

    query: str
    key: str
    value: str
    mask: str | None = None
    scale: float | None = None
    perm: tuple[int, ...] = ()


@dataclass(frozen=True)
class Plan:
    """What a case implies for judging it, computed once from the case (`fuzz.plan`)."""

    returns: tuple[str, ...]  # the names the function returns
    input_names: tuple[str, ...]  # every input, in order
    tensor_inputs: tuple[str, ...]  # the inputs whose values after a call are compared
    origins: dict[str, str]  # a statement's output -> its kind (`attention`, ...)
    scores: tuple[Scores, ...]  # every attention, in program order
    feeders: dict[str, tuple[int, ...]]  # a value some attention feeds -> those attentions
    exact_ops: int  # ulps a value no attention feeds may differ by
    numeric: bool = True  # False: an unused dropout's draws (docs/oracle.md)
    precision: str | None = None  # the coarsest dtype the program casts through
    backward: bool = False
    fullgraph: bool = False
    must_break: bool = False  # the program breaks the graph, so fullgraph must raise
    hand: bool = False  # hand-written attention: an error in it is a site of its own
    expected_frames: int | None = None  # the frame model's count for the first call
    size_rules: tuple[tuple[int, ...], ...] | None = None  # per call: graphs it may compile
    size_mode: str = "automatic"  # how the dynamic-shape rules were chosen
    repeats_context: tuple[bool, ...] = (False,)  # per call: an earlier call's context
    grows: tuple[int, ...] = (0,)  # per call: how much longer L and S are
    device: str = "cpu"


@dataclass
class Judgement:
    """What judging found: failures, the checks that ran, and every values measurement
    as (label, where, measure), label the dtype or `grad-q:float32`."""

    failures: list[Failure] = field(default_factory=list)
    checked: set[str] = field(default_factory=set)
    measures: list[tuple[str, str, ErrorMeasure]] = field(default_factory=list)
    excused: list[str] = field(default_factory=list)  # why some comparison had no truth


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def describe_error(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {first[0][:200] if first else ''}"


def _compiled_error(exc: BaseException) -> tuple[str, str, str]:
    """(how the condition names a compiled error, its innermost error's message class,
    what the explanation adds): `internal-` marks a compiler failure."""
    kind, inner, inner_type = unwrap(exc)
    name = ("internal-" if kind == "compiler" else "") + inner_type.__name__
    seen = "" if inner is exc else f" (innermost: {describe_error(inner)})"
    return name, message_class(inner), seen


def check_outcome(e: BaseException | None, c: BaseException | None) -> Failure | None:
    """Both succeed, or both raise the same error: compiled's innermost user-facing error
    (`fuzz.errors.unwrap`) is of eager's type exactly. A compiler failure where eager
    raised a user-facing error is a divergence, not the same error."""
    if e is None and c is None:
        return None
    if e is not None and c is not None and same_error(e, c):
        return None
    if c is None:
        assert e is not None
        return Failure("outcome", "call", f"eager-raised-{type(e).__name__}",
                       f"eager raised {describe_error(e)}; compiled succeeded",
                       message=message_class(e))
    name, message, seen = _compiled_error(c)
    if e is None:
        return Failure("outcome", "call", f"compiled-raised-{name}",
                       f"eager succeeded; compiled raised {describe_error(c)}{seen}",
                       message=message)
    return Failure("outcome", "call", f"{type(e).__name__}-vs-{name}",
                   f"eager raised {describe_error(e)}; compiled raised "
                   f"{describe_error(c)}{seen}", message=message)


def _stride_signature(t: torch.Tensor) -> tuple[tuple[int, int], ...]:
    """Strides on the dims that have more than one element: the only ones that matter."""
    return tuple((d, s) for d, (n, s) in enumerate(zip(t.shape, t.stride())) if n > 1)


@dataclass(frozen=True)
class Bound:
    """How a value is held: to the float64 run under `conditioning` (and, for a gradient,
    its `terms` and fudge `factor`), or with `exact_ops`, to eager's own value within
    that many ulps."""

    conditioning: float | torch.Tensor = 1.0  # a tensor: one per output row
    precision: str | None = None
    terms: float = 0.0
    factor: float | None = None
    exact_ops: int = 0


def compare_tensor(where: str, e: torch.Tensor, c: torch.Tensor, r: Any, numeric: bool,
                   bound: Bound, strides: bool = True
                   ) -> tuple[list[Failure], ErrorMeasure | None]:
    """Metadata, stride policy (unless `strides` is off), NaN/Inf positions, then values
    as `bound` says."""
    cond = _dtype(e)
    meta_e, meta_c = ((tuple(e.shape), e.dtype, e.device, e.requires_grad),
                      (tuple(c.shape), c.dtype, c.device, c.requires_grad))
    if meta_e != meta_c:
        return [Failure("metadata", where, cond, f"{where}: eager is shape/dtype/device/"
                        f"requires_grad {meta_e}, compiled {meta_c}")], None
    failures = []
    if strides and _stride_signature(e) != _stride_signature(c):
        failures.append(Failure("stride", where, cond, f"{where}: eager strides {e.stride()}, "
                                f"compiled {c.stride()} for shape {tuple(e.shape)}"))
    ops = bound.exact_ops
    if not (numeric or ops):  # dropout's draws: see docs/oracle.md
        return failures, None
    if not e.is_floating_point():
        if not torch.equal(e, c):
            failures.append(Failure("values", where, cond, f"{where}: {cond} values differ"))
        return failures, None
    e, c = e.detach(), c.detach()
    exact = not ops and isinstance(r, torch.Tensor) and r.shape == e.shape
    # Where eager overflowed but the float64 truth is finite, a finite compiled value is
    # no divergence of its own; the values check below holds it to the truth there.
    rescued = (~torch.isfinite(e) & torch.isfinite(c) & torch.isfinite(r.detach().to(e.device))
               if exact else torch.zeros_like(e, dtype=torch.bool))
    for name, test in (("NaN", torch.isnan), ("+inf", torch.isposinf),
                       ("-inf", torch.isneginf)):
        pe, pc = test(e), test(c)
        differ = (pe != pc) & ~rescued
        if bool(differ.any()):
            failures.append(Failure("nan-inf", where, cond, f"{where}: {name} at "
                            f"{int(pe.sum())} positions in eager, {int(pc.sum())} in compiled, "
                            f"{int(differ.sum())} differ"))
    if ops:
        m = measure_exact(e, c, ops)
        if m is not None and not m.passes:
            failures.append(Failure("values", where, cond, f"{where}: no attention feeds "
                            f"it, yet compiled differs from eager by {m.compiled:.3g}; allowed "
                            f"{m.allowed:.3g} ({ops} ulp of {cond} at its magnitude)"))
        return failures, m
    if not exact:
        return failures, None
    m = measure(e, c, r, bound.conditioning, bound.precision, bound.terms, bound.factor)
    if m is not None and not m.passes:
        failures.append(Failure("values", where, cond, f"{where}: max error vs float64 is "
                        f"{m.compiled:.3g} compiled, {m.eager:.3g} eager; allowed "
                        f"{m.allowed:.3g} ({m.fudge:g} x max(eager error, {cond} floor "
                        f"x score conditioning {_largest(bound.conditioning):.3g}))"))
    return failures, m


def _largest(conditioning: float | torch.Tensor) -> float:
    if isinstance(conditioning, torch.Tensor):
        return conditioning.max().item() if conditioning.numel() else 1.0
    return conditioning


def _storage_bytes(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All bytes of `t`'s storage, and which of them lie outside `t`'s view."""
    raw = torch.empty(0, dtype=torch.uint8, device=t.device).set_(t.untyped_storage())
    inside = torch.zeros(raw.numel() // t.element_size(), dtype=torch.bool, device=t.device)
    if t.numel():
        inside.as_strided(t.shape, t.stride(), t.storage_offset()).fill_(True)
    return raw, ~inside.repeat_interleave(t.element_size())


def compare_storage(where: str, e: torch.Tensor, c: torch.Tensor) -> list[Failure]:
    """The storage around an input's view (an `offset` or `strided` input lies inside a
    larger buffer) is bit for bit what it was in eager: nothing may write past a view."""
    if e.untyped_storage().nbytes() == e.numel() * e.element_size():
        return []
    raw_e, outside = _storage_bytes(e.detach())
    raw_c, _ = _storage_bytes(c.detach())
    if raw_e.shape != raw_c.shape or torch.equal(raw_e[outside], raw_c[outside]):
        return []
    changed = int((raw_e[outside] != raw_c[outside]).sum())
    return [Failure("mutation", "input-storage", _dtype(e), f"{where}: {changed} byte(s) of "
                    "its storage outside the view differ between eager and compiled")]


def _operands(s: Scores, inputs: dict[str, Any]) -> list[torch.Tensor] | None:
    """The attention's query, key and value as its scores see them (permuted), or None
    where one is not a tensor input."""
    qkv = [inputs.get(n) for n in (s.query, s.key, s.value)]
    if not all(isinstance(t, torch.Tensor) for t in qkv):
        return None
    return [t.permute(s.perm) if s.perm else t for t in qkv]


def conditionings(plan: Plan, reference: Observation) -> list[float]:
    """Per attention, its score conditioning on the float64 inputs; 1 where it cannot be
    computed (an invalid call raises in eager anyway)."""
    kappas = []
    for s in plan.scores:
        qkv = _operands(s, reference.inputs)
        kappa = score_conditioning(qkv[0], qkv[1], s.scale) if qkv else 1.0
        kappas.append(kappa if math.isfinite(kappa) else 1.0)
    return kappas


def row_conditionings(plan: Plan, reference: Observation) -> list[torch.Tensor | None]:
    """Per SDPA call, its score conditioning per query row (`row_conditioning`), where its
    output's rows are its query's: None for a hand-written form, which may permute."""
    rows: list[torch.Tensor | None] = []
    for s in plan.scores:
        qkv = None if s.perm else _operands(s, reference.inputs)
        rows.append(row_conditioning(qkv[0], qkv[1], s.scale) if qkv else None)
    return [r if r is not None and bool(torch.isfinite(r).all()) else None for r in rows]


def _worst(kappas: list[float], which: Any) -> float:
    return max([1.0] + [kappas[i] for i in which])


def gradient_terms(plan: Plan, eager: Observation, reference: Observation) -> dict[str, float]:
    """Input name -> the bound on its gradient's terms (`gradient_bounds`), worst over the
    attentions that read it, from the float64 inputs and the upstream gradients' size."""
    upstream = max([upstream_gradient(t, i).abs().max().item()
                    for i, t in enumerate(eager.leaves or ())
                    if isinstance(t, torch.Tensor) and t.numel()] or [0.0])
    terms: dict[str, float] = {}
    for s in plan.scores:
        qkv = _operands(s, reference.inputs)
        if qkv is None:
            continue
        for role, bound in gradient_bounds(*qkv, s.scale, upstream).items():
            name = getattr(s, role)
            if name is not None and math.isfinite(bound):
                terms[name] = max(terms.get(name, 0.0), bound)
    return terms


def _input_name(obs: Observation, leaf: Any) -> str | None:
    return next((n for n, t in obs.inputs.items() if t is leaf), None)


def _site(plan: Plan, leaf_name: str) -> str:
    """Where a leaf comes from, stably across programs: the kind of statement that made
    the returned value (`attention`, `read_backends`, ...) or `input`, not its name, so
    that one bug seen through differently named values has one signature."""
    name = leaf_name.split("[")[0]
    if name in plan.input_names:
        return "input"
    return plan.origins.get(name, name)


def _leaf_name(plan: Plan, obs: Observation, i: int) -> str:
    """The returned name a leaf comes from, with its index inside it: `out`, `backends2[1]`."""
    assert obs.paths is not None
    path = obs.paths[i]
    if len(plan.returns) > 1:
        name, path = plan.returns[path[0]], path[1:]
    else:
        name = plan.returns[0]
    return name + "".join(f"[{k}]" for k in path)


def judge(plan: Plan, eager: tuple[Observation, ...], reference: tuple[Observation, ...],
          compiled: tuple[Observation, ...], frames: Frames) -> Judgement:
    """Every check of the compiled runs against eager, the reference and the frame model."""
    out = Judgement()
    for i, (e, r, c) in enumerate(zip(eager, reference, compiled)):
        if plan.fullgraph and plan.must_break:
            out.checked.add("fullgraph")
            # An error eager raises too may come first while tracing; that is no failure.
            same = e.error is not None and check_outcome(e.error, c.error) is None
            if not (isinstance(c.error, Unsupported) or same):
                seen = "raised " + describe_error(c.error) if c.error else "succeeded"
                out.failures.append(Failure(
                    "fullgraph", "call", "breaking-program", "the program breaks the graph, "
                    f"so fullgraph=True must raise Unsupported; compiled {seen}", i))
            continue
        out.failures += [replace(f, call=i, detail=f"call {i}: {f.detail}" if i else f.detail)
                         for f in _judge_call(plan, e, r, c, out)]
    out.failures += check_frames(plan, compiled, frames, out.checked)
    if plan.hand:  # an error in hand-written attention is its own bug
        out.failures = [replace(f, where="hand_attention") if f.check == "outcome" else f
                        for f in out.failures]
    # A failure shows "first in a later call" only if the first call did not show it.
    first = {(f.check, f.where, f.condition) for f in out.failures if f.call == 0}
    out.failures = [f for f in out.failures
                    if f.call == 0 or (f.check, f.where, f.condition) not in first]
    if plan.device == "cuda":  # each CUDA kernel is its own code for numbers
        out.failures = [_kernel_tagged(f, eager[f.call].kernels) for f in out.failures]
    return out


def _kernel_tagged(failure: Failure, kernels: tuple[str, ...]) -> Failure:
    """The failure with the kernels eager ran in its call (`@flash`, `@none` where no
    kernel could run) in its condition, if its check is about what a kernel computes."""
    if failure.check not in KERNEL_CHECKS or not kernels:
        return failure
    return replace(failure, kernels="+".join(sorted(set(kernels))))


EAGER_ACCEPTS_UNEQUAL_KEY_VALUE = "eager-accepts-unequal-key-value-lengths"


def eager_invalid(plan: Plan, eager: Observation) -> str | None:
    """Why eager's success is eager's own bug, if it is: an attention whose key and value
    have different sequence lengths, which SDPA must refuse (the math kernel does), yet CPU
    flash runs, reading past the value (docs/findings.md). Its output is no truth to hold
    compiled to, and compiled raising is right."""
    if eager.error is not None:
        return None
    for s in plan.scores:
        qkv = _operands(s, eager.inputs)
        if qkv and qkv[1].dim() >= 2 and qkv[2].dim() >= 2 and \
                qkv[1].size(-2) != qkv[2].size(-2):
            return EAGER_ACCEPTS_UNEQUAL_KEY_VALUE
    return None


def _judge_call(plan: Plan, eager: Observation, ref: Observation, compiled: Observation,
                out: Judgement) -> list[Failure]:
    """Every check, whatever failed before it: an outcome or structure divergence does not
    excuse what the call did to its inputs or to the backend state. Where eager's success
    is its own bug (`eager_invalid`), its outputs are not compared, nothing else skipped."""
    out.checked.add("outcome")
    invalid = eager_invalid(plan, eager)
    if invalid:
        out.excused.append(invalid)
    outcome = None if invalid else check_outcome(eager.error, compiled.error)
    failures: list[Failure] = [outcome] if outcome is not None else []
    if plan.numeric:
        out.checked.update(("nan-inf", "values"))
    kappas = conditionings(plan, ref)
    if outcome is None and eager.error is None and not invalid:
        out.checked.add("structure")
        assert eager.leaves is not None and compiled.leaves is not None
        if eager.structure != compiled.structure or len(eager.leaves) != len(compiled.leaves):
            failures.append(Failure("structure", "return", "pytree", f"eager returned "
                            f"{eager.structure}, compiled {compiled.structure}"))
        else:
            out.checked.update(("metadata", "stride", "identity"))
            failures += _judge_leaves(plan, eager, ref, compiled, kappas, out)
        if plan.backward:
            failures += _judge_backward(plan, eager, ref, compiled, kappas, out)
    out.checked.add("mutation")
    # After an error, what the call did before it is a site of its own: Dynamo raises
    # tracing errors before its graph runs, which is not what a wrong graph does.
    site = "input-after-error" if eager.error is not None else "input"
    exact = Bound(exact_ops=plan.exact_ops)
    for name in plan.tensor_inputs:
        where = f"input {name} after the call"
        e, c = eager.inputs[name], compiled.inputs[name]
        fails, _ = compare_tensor(where, e, c, ref.inputs.get(name), plan.numeric, exact)
        failures += [Failure("mutation", site, f.condition, f.detail) for f in fails]
        failures += compare_storage(where, e, c)
    out.checked.add("backend-state")
    if eager.state_after != compiled.state_after:
        # Which kernels are enabled, or only their order: two different kinds of leak.
        kind = "enabled" if eager.state_after.enabled != compiled.state_after.enabled \
            else "priority"
        failures.append(Failure("backend-state", "after-call", kind,
                        "SDPA backend state right after the call: eager "
                        f"{eager.state_after.describe()}, compiled "
                        f"{compiled.state_after.describe()}"))
    return failures


def _leaf_bound(plan: Plan, name: str, leaf: Any, kappas: list[float],
                rows: list[torch.Tensor | None]) -> Bound:
    """A value some attention feeds is held to the float64 run, conditioned by the
    attentions that feed it alone, row by row where it is one SDPA call's own output;
    any other value to eager's own (`measure_exact`)."""
    if name not in plan.feeders:
        return Bound(exact_ops=plan.exact_ops)
    which = plan.feeders[name]
    own = rows[which[0]] if len(which) == 1 and plan.origins.get(name) == "attention" \
        else None
    if own is not None and isinstance(leaf, torch.Tensor) and _broadcasts(own, leaf):
        return Bound(own, plan.precision)
    return Bound(_worst(kappas, which), plan.precision)


def _broadcasts(rows: torch.Tensor, t: torch.Tensor) -> bool:
    try:
        return torch.broadcast_shapes(rows.shape, t.shape) == t.shape
    except RuntimeError:
        return False


def _judge_leaves(plan: Plan, eager: Observation, ref: Observation, compiled: Observation,
                  kappas: list[float], out: Judgement) -> list[Failure]:
    """Identity and values of each returned leaf."""
    assert eager.leaves is not None and compiled.leaves is not None
    failures = []
    ref_leaves = ref.leaves if ref.error is None and ref.leaves is not None else ()
    rows = row_conditionings(plan, ref)
    for j, (e, c) in enumerate(zip(eager.leaves, compiled.leaves)):
        where = _leaf_name(plan, eager, j)
        r = ref_leaves[j] if j < len(ref_leaves) else None
        bound = _leaf_bound(plan, where.split("[")[0], e, kappas, rows)
        found = _check_identity(where, eager, compiled, e, c)
        found += _compare_leaf(plan, where, eager, compiled, e, c, r, bound, out)
        site = _site(plan, where)
        failures += [replace(f, where=site + f.where[len(where):]) for f in found]
    return failures


def _judge_backward(plan: Plan, eager: Observation, ref: Observation, compiled: Observation,
                    kappas: list[float], out: Judgement) -> list[Failure]:
    """Backward from the same seeded upstream gradients: both raise alike or both succeed;
    every input's gradient exists in both or in neither, and is compared like an output
    (`grad-q`, `grad-mask`, ...) against the float64 run's gradient."""
    out.checked.add("backward")
    if eager.grad_error is not None or compiled.grad_error is not None:
        outcome = check_outcome(eager.grad_error, compiled.grad_error)
        return [replace(outcome, where="backward")] if outcome else []
    failures = []
    terms = gradient_terms(plan, eager, ref)
    ref_grads = ref.grads or {}
    for name, ge in (eager.grads or {}).items():
        gc, where = (compiled.grads or {}).get(name), f"grad-{name}"
        if (ge is None) != (gc is None):
            failures.append(Failure("structure", where, "none", f"{where}: eager "
                            f"{'has no' if ge is None else 'has a'} gradient, compiled "
                            f"{'has no' if gc is None else 'has a'} gradient"))
        elif ge is not None:
            readers = [i for i, s in enumerate(plan.scores)
                       if name in (s.query, s.key, s.value, s.mask)]
            bound = Bound(_worst(kappas, readers), plan.precision, terms.get(name, 0.0),
                          fudge(_dtype(ge), eager.kernels, gradient=True))
            # A gradient's layout is the autograd engine's choice, not the program's: eager
            # SDPA's own backward returns non-contiguous gradients, AOTAutograd others.
            fails, m = compare_tensor(where, ge, gc, ref_grads.get(name), plan.numeric,
                                      bound, strides=False)
            failures += fails
            if m is not None:
                out.measures.append((f"{where}:{_dtype(ge)}", where, m))
    return failures


def check_frames(plan: Plan, compiled: tuple[Observation, ...], frames: Frames,
                 checked: set[str]) -> list[Failure]:
    """First call: the frame model's count. A later call from a context already seen, and
    the repeat of the first call: nothing new. A reused compiled function: nothing at all."""
    if compiled[0].error is not None:
        return []
    checked.add("recompile")
    failures = []
    expected = 0 if frames.reused else plan.expected_frames
    if expected is not None:
        checked.add("frames")
    if expected is not None and frames.per_call[0] != expected:
        failures.append(Failure("frames", "first-call", f"expected-{expected}",
                        f"the counting backend compiled {frames.per_call[0]} graph(s) on the "
                        f"first call; the frame model predicts {expected}"
                        + (" (warm from an equal case)" if frames.reused else "")))
    sized = None if frames.reused else plan.size_rules
    if sized is not None:  # calls of other sequence lengths: the dynamic-shape rules
        for i, (got, want) in enumerate(zip(frames.per_call[1:], sized[1:]), start=1):
            if got not in want and compiled[i].error is None:
                failures.append(Failure("recompile", "call", f"size-{plan.size_mode}",
                                f"call {i} (lengths +{plan.grows[i]}, {plan.size_mode} "
                                f"shapes) compiled {got} graph(s); the dynamic-shape rules "
                                f"allow {' or '.join(map(str, sorted(want)))}", i))
    else:
        for i, seen in enumerate(plan.repeats_context[1:], start=1):
            if seen and frames.per_call[i] and compiled[i].error is None:
                failures.append(Failure("recompile", "call", "same-context",
                                f"call {i} repeats an earlier call's context with inputs of "
                                f"equal shapes but compiled {frames.per_call[i]} more "
                                "graph(s)", i))
    if frames.repeat:
        failures.append(Failure("recompile", "repeat", "equal-inputs",
                        f"repeating the first call with equal inputs compiled {frames.repeat} "
                        "more graph(s)"))
    return failures


def _compare_leaf(plan: Plan, where: str, eager: Observation, compiled: Observation, e: Any,
                  c: Any, r: Any, bound: Bound, out: Judgement) -> list[Failure]:
    if type(e) is not type(c):
        return [Failure("structure", where, "type", f"{where}: eager returned a "
                        f"{type(e).__name__}, compiled a {type(c).__name__}")]
    if isinstance(e, torch.Tensor):
        fails, m = compare_tensor(where, e, c, r, plan.numeric, bound)
        if m is not None and not bound.exact_ops:
            out.measures.append((_dtype(e), where, m))
        return fails
    if isinstance(e, SDPAParams):
        return _compare_params(plan, where, eager, compiled, e, c, r, bound)
    if e != c:
        return [Failure("values", where, type(e).__name__,
                        f"{where}: eager returned {e!r}, compiled {c!r}")]
    return []


def _compare_params(plan: Plan, where: str, eager: Observation, compiled: Observation,
                    e: Any, c: Any, r: Any, bound: Bound) -> list[Failure]:
    """An SDPAParams's tensor fields are the very objects eager's are (mapped to each run's
    own inputs), or equal tensors where eager's are not inputs; other fields are equal."""
    failures = []
    for attr in ("query", "key", "value", "attn_mask"):
        fe, fc = getattr(e, attr), getattr(c, attr)
        failures += _check_identity(f"{where}.{attr}", eager, compiled, fe, fc)
        if isinstance(fe, torch.Tensor) and isinstance(fc, torch.Tensor):
            fr = getattr(r, attr, None) if r is not None else None
            failures += compare_tensor(f"{where}.{attr}", fe, fc, fr, plan.numeric, bound)[0]
        elif (fe is None) != (fc is None):
            failures.append(Failure("structure", f"{where}.{attr}", "none",
                                    f"{where}.{attr}: eager {fe!r}, compiled {fc!r}"))
    for attr in ("dropout", "is_causal", "enable_gqa"):
        if getattr(e, attr) != getattr(c, attr):
            failures.append(Failure("values", f"{where}.{attr}", "params", f"{where}.{attr}: "
                            f"eager {getattr(e, attr)!r}, compiled {getattr(c, attr)!r}"))
    return failures


def _check_identity(where: str, eager: Observation, compiled: Observation, e: Any, c: Any
                    ) -> list[Failure]:
    """An input returned as itself by eager must be returned as itself by compiled."""
    name_e, name_c = _input_name(eager, e), _input_name(compiled, c)
    if name_e == name_c:
        return []
    said = {n: f"input {n} itself" if n else "a new object" for n in (name_e, name_c)}
    return [Failure("identity", where, f"returns-{name_e or 'new'}",
                    f"{where}: eager returns {said[name_e]}, compiled returns {said[name_c]}")]


# --- fuzz.standalone ----------------------------------------------------------

from typing import Any, Callable

import torch
import torch._inductor.config
from torch._dynamo.testing import CompileCounterWithBackend



def main(fn: Callable[..., Any], make_inputs: Callable[..., dict[str, Any]], backend: Any,
         compile_kwargs: dict[str, Any], calls: tuple[Call, ...], plan: Plan,
         mark_dynamic: dict[str, list[int]], reference_mode: Callable[[], Any]) -> int:
    """Run and judge the case; print every measurement and divergence. Exit status: 1
    while a divergence holds, 0 once it is gone, DEVICE_ERROR_EXIT after a GPU error."""
    torch._inductor.config.fallback_random = True  # Inductor draws as eager does
    counter = CompileCounterWithBackend(backend)
    compiled_fn = torch.compile(fn, backend=counter, **compile_kwargs)

    def mark(inputs: dict[str, Any]) -> dict[str, Any]:
        for name, dims in mark_dynamic.items():
            for dim in dims:
                torch._dynamo.mark_dynamic(inputs[name], dim)
        return inputs

    try:
        runs = run_calls(fn, compiled_fn, lambda: counter.frame_count, make_inputs, calls,
                         plan.backward, mark=mark, reference_mode=reference_mode)
    except DeviceError as exc:
        print("device error (the CUDA context is unusable now):", exc)
        return DEVICE_ERROR_EXIT
    judged = judge(plan, runs.eager, runs.reference, runs.compiled, runs.frames)
    for _, where, m in judged.measures:
        print(f"{where}: max error vs float64: eager {m.eager:.3g}, compiled "
              f"{m.compiled:.3g}, allowed {m.allowed:.3g}")
    print(f"graphs compiled per call: {list(runs.frames.per_call)}, by repeating the first: "
          f"{runs.frames.repeat}; the frame model predicts {plan.expected_frames} first")
    for f in judged.failures:
        print(f"DIVERGENCE [{f.signature}] {f.detail}")
    print("diverges" if judged.failures else "no divergence")
    return 1 if judged.failures else 0


BACKEND = 'eager'
COMPILE_KWARGS = {'fullgraph': False, 'dynamic': None}
CALLS = (Call(backends=None, set_priority=False, salt=0, grow=0),)
PLAN = Plan(returns=('q',), input_names=('q', 'k', 'v', 'mask'), tensor_inputs=('q', 'k', 'v', 'mask'), origins={'out1': 'attention'}, scores=(Scores(query='q', key='k', value='v', mask='mask', scale=None, perm=()),), feeders={'out1': (0,)}, exact_ops=1, numeric=True, precision=None, backward=False, fullgraph=False, must_break=False, hand=False, expected_frames=1, size_rules=None, size_mode='automatic', repeats_context=(False,), grows=(0,), device='cpu')
MARK_DYNAMIC = {}  # input -> dims marked dynamic before compiled calls

if __name__ == "__main__":
    sys.exit(main(fn, make_inputs, BACKEND, COMPILE_KWARGS, CALLS, PLAN, MARK_DYNAMIC, lambda: None))
