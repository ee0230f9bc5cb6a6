"""sdpa-fuzz repro: runs fn eagerly, compiled and in float64 on identical inputs, once
per outer sdpa_kernel context, and compares outputs, identities, inputs after the call,
the global SDPA backend state and Dynamo's frame count.

Exit status 1 while a divergence holds, 0 once it is gone."""
import sys
import torch
import torch.nn.functional as F


def fn(q, k, v, mask):
    out1 = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=True)
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
        'q': build_tensor((1, 1, 1, 1), 'float32', 'normal', 'contiguous', reseed(0, salt)),
        'k': build_tensor((1, 1, 1, 1), 'float32', 'normal', 'contiguous', reseed(0, salt)),
        'v': build_tensor((1, 1, 1, 1), 'float32', 'normal', 'contiguous', reseed(0, salt)),
        'mask': build_tensor((1, 1), 'bool', 'random', 'contiguous', reseed(0, salt)),
    }
    if dtype is not None:
        t = {n: x.detach().to(dtype).requires_grad_(x.requires_grad)
             if x.is_floating_point() else x
             for n, x in t.items()}
    return t

BACKEND = 'inductor'
COMPILE_KWARGS = {'fullgraph': False, 'dynamic': None}
CALLS = [None, (['MATH'], False)]  # outer sdpa_kernel (backends, set_priority) per call, or None
SALTS = [0, 0]  # per call: 0, or the seed variant whose input values it gets
GROWS = [0, 0]  # per call: how much longer L and S are
RECOMPILES = None  # per call: graphs it may compile, if sizes vary
EXPECTED_FRAMES = 1  # the frame model's count
MUST_BREAK = False  # so fullgraph=True must raise
NUMERIC = True  # False: an unused dropout's draws
RETURNS = ['q']  # the names fn returns
DROPOUT_SEED = 20240607  # torch.manual_seed before every call
FED = ['out1']  # names some attention computes
EXACT_OPS = 1  # ulps a value no attention feeds may differ by
BACKWARD = False  # run backward from seeded upstream gradients
TOLERANCES = {'float64': (3.0, 1.7763568394002505e-15, 1.7763568394002505e-15, 4e-323), 'float32': (3.0, 9.5367431640625e-07, 9.5367431640625e-07, 1.1210387714598537e-44), 'bfloat16': (3.0, 0.00390625, 9.5367431640625e-07, 9.183549615799121e-41), 'float16': (3.0, 0.00048828125, 9.5367431640625e-07, 5.960464477539063e-08)}  # dtype -> (fudge, output floor, score floor, absolute floor)
SCORES = [('q', 'k', None, (), 'v', 'mask')]  # (query, key, scale, permutation, value, mask) per attention
PRECISION = None  # the coarsest dtype fn casts through
MATH_REFERENCE = False  # float64 SDPA by math (see MathSDPA)
MARK_DYNAMIC = {}  # input -> dims marked dynamic before compiled calls

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

def score_conditioning(query: torch.Tensor, key: torch.Tensor, scale: float | None) -> float:
    """An upper bound on sum_i |scale * q_i * k_i| over the score dot products.

    Any implementation computing the scores in a given precision may be off by about eps
    times this, and softmax passes that absolute error on to the output; so two correct
    implementations can differ by that much however accurate one of them happens to be.
    """
    q, k = query.detach().double().abs(), key.detach().double().abs()
    if q.numel() == 0 or k.numel() == 0:
        return 1.0
    s = abs(scale) if scale is not None else q.size(-1) ** -0.5
    return s * q.sum(-1).max().item() * k.max().item()

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

from dataclasses import dataclass

EPS = {'float64': 2.220446049250313e-16, 'float32': 1.1920928955078125e-07, 'bfloat16': 0.0078125, 'float16': 0.0009765625}
SUBNORMAL = {'float64': 5e-324, 'float32': 1.401298464324817e-45, 'bfloat16': 9.183549615799121e-41, 'float16': 5.960464477539063e-08}
TINY = 1e-300


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


import contextlib

from torch._dynamo.testing import CompileCounterWithBackend
from torch.utils._pytree import tree_flatten_with_path

FLAGS = ("flash", "mem_efficient", "math", "cudnn", "overrideable")


def backend_state():
    enabled = [f for f in FLAGS if getattr(torch._C, f"_get_{f}_sdp_enabled")()]
    return enabled, list(torch._C._get_sdp_priority_order())


def set_backend_state(state):
    for f in FLAGS:
        getattr(torch._C, f"_set_sdp_use_{f}")(f in state[0])
    torch._C._set_sdp_priority_order(state[1])


def upstream(leaf, index, rounded_to=None):
    """the seeded gradient flowing into output leaf `index`, as sdpa-fuzz draws it"""
    gen = torch.Generator().manual_seed(7919 * (index + 1))
    g = torch.randn(tuple(leaf.shape), generator=gen).to(rounded_to or leaf.dtype)
    return g.to(device=leaf.device, dtype=leaf.dtype)


def gradients(leaves, inputs, rounded_to=None):
    """(grads of the inputs that require grad, backward's error)"""
    wanted = [n for n, t in inputs.items() if isinstance(t, torch.Tensor) and t.requires_grad]
    outs = [(i, t) for i, t in enumerate(leaves)
            if isinstance(t, torch.Tensor) and t.grad_fn is not None]
    if not wanted or not outs:
        return {}, None
    try:
        grads = torch.autograd.grad(
            [t for _, t in outs], [inputs[n] for n in wanted],
            [upstream(t, i, rounded_to[i] if rounded_to else None) for i, t in outs],
            allow_unused=True)
    except Exception as exc:
        return None, exc
    return dict(zip(wanted, grads)), None


def call(f, inputs, context, start, rounded_to=None):
    """(leaves, error, inputs, state right after the call inside its outer context,
    (input gradients, backward's error), the returned name of each leaf); dropout draws
    from a generator seeded right before the call, the same in every run"""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    set_backend_state(start)
    torch.manual_seed(DROPOUT_SEED)
    outer = contextlib.nullcontext() if context is None else sdpa_kernel(
        [getattr(SDPBackend, b) for b in context[0]], set_priority=context[1])
    with outer:
        try:
            flat = tree_flatten_with_path(f(**inputs))[0]
            leaves, error = [leaf for _, leaf in flat], None
            names = [RETURNS[path[0].idx] if len(RETURNS) > 1 else RETURNS[0]
                     for path, _ in flat]
            if torch.cuda.is_initialized():
                torch.cuda.synchronize()
        except Exception as exc:  # the outcome is part of what is compared
            if type(exc).__name__ == "AcceleratorError" or "CUDA error" in str(exc):
                print("device error (the CUDA context is unusable now):", exc)
                sys.exit(3)
            leaves, error, names = None, exc, None
        state = backend_state()
        grads = gradients(leaves, inputs, rounded_to) if BACKWARD and leaves else (None, None)
    set_backend_state(start)
    return leaves, error, inputs, state, grads, names


def input_name(inputs, x):
    return next((n for n, t in inputs.items() if t is x), None)


def compare(name, e, c, r, kappa, problems, strides=True, terms=0.0, ops=0):
    """as the oracle's compare_tensor: with `ops`, a value no attention feeds, held to
    eager's own value within `ops` ulps"""
    if not isinstance(e, torch.Tensor):
        if type(e) is not type(c) or (not isinstance(e, torch.backends.cuda.SDPAParams)
                                      and e != c):
            problems.append(f"{name}: eager {e!r}, compiled {c!r}")
        return
    meta = lambda t: (tuple(t.shape), t.dtype, t.device, t.requires_grad)
    if meta(e) != meta(c):
        problems.append(f"{name}: shape, dtype, device, requires_grad: eager {meta(e)}, "
                        f"compiled {meta(c)}")
        return
    big = lambda t: [(d, s) for d, (n, s) in enumerate(zip(t.shape, t.stride())) if n > 1]
    if strides and big(e) != big(c):
        problems.append(f"{name}: strides eager {e.stride()}, compiled {c.stride()}")
    if not (NUMERIC or ops):
        return
    if not e.is_floating_point():
        if not torch.equal(e, c):
            problems.append(f"{name}: values differ")
        return
    e, c = e.detach(), c.detach()
    if ops:
        for what, test in (("NaN", torch.isnan), ("+inf", torch.isposinf),
                           ("-inf", torch.isneginf)):
            if (test(e) != test(c)).any():
                problems.append(f"{name}: {what} positions differ")
        m = measure_exact(e, c, ops)
        if m is not None:
            print(f"{name}: no attention feeds it; compiled differs from eager by "
                  f"{m.compiled:.3g}, allowed {m.allowed:.3g}")
            if not m.passes:
                problems.append(f"{name}: compiled differs from eager by {m.compiled:.3g} "
                                f"> allowed {m.allowed:.3g}")
        return
    exact = isinstance(r, torch.Tensor) and r.shape == e.shape
    r = r.detach().to(torch.float64) if exact else None
    # eager overflowed where the float64 truth is finite: compiled may be finite there
    rescued = (~torch.isfinite(e) & torch.isfinite(c) & torch.isfinite(r) if exact
               else torch.zeros_like(e, dtype=torch.bool))
    for what, test in (("NaN", torch.isnan), ("+inf", torch.isposinf), ("-inf", torch.isneginf)):
        if ((test(e) != test(c)) & ~rescued).any():
            problems.append(f"{name}: {what} positions differ")
    if not exact:
        return
    ok_c = torch.isfinite(c) & torch.isfinite(r)
    ok = ok_c & torch.isfinite(e)
    if ok_c.any():
        err_e = (e.double() - r)[ok].abs().max().item() if ok.any() else 0.0
        err_c = (c.double() - r)[ok_c].abs().max().item()
        dtype = str(e.dtype).replace("torch.", "")
        if PRECISION is not None and TOLERANCES[PRECISION][1] > TOLERANCES[dtype][1]:
            dtype = PRECISION  # the program rounds through a coarser dtype
        fudge, floor, score_floor, abs_floor = TOLERANCES[dtype]
        relative = max(floor, score_floor * kappa)
        allowed = fudge * max(err_e, relative * r[ok_c].abs().max().item(), abs_floor,
                              score_floor * terms, 1e-300)
        print(f"{name}: error vs float64: eager {err_e:.3g}, compiled {err_c:.3g}, "
              f"allowed {allowed:.3g}")
        if err_c > allowed:
            problems.append(f"{name}: compiled error {err_c:.3g} > allowed {allowed:.3g}")


def storage_outside(name, e, c, problems):
    """the storage around an input's view is bit for bit eager's"""
    if e.untyped_storage().nbytes() == e.numel() * e.element_size():
        return
    def outside(t):
        raw = torch.empty(0, dtype=torch.uint8, device=t.device).set_(t.untyped_storage())
        inside = torch.zeros(raw.numel() // t.element_size(), dtype=torch.bool, device=t.device)
        if t.numel():
            inside.as_strided(t.shape, t.stride(), t.storage_offset()).fill_(True)
        return raw[~inside.repeat_interleave(t.element_size())]
    if not torch.equal(outside(e.detach()), outside(c.detach())):
        problems.append(f"{name}: its storage outside the view differs")


def check_call(i, eager, ref, compiled, problems):
    """every check, whatever failed before it, as the oracle's judge"""
    (e_out, e_exc, e_in, e_state, e_grads, e_names), (r_out, _, r_in, _, r_grads, _), \
        (c_out, c_exc, c_in, c_state, c_grads, _) = eager, ref, compiled
    tag = f"call {i}: "
    if e_state != c_state:  # compared whatever the outcome: a raising call must clean up too
        problems.append(tag + f"SDPA backend state after the call: eager {e_state}, "
                        f"compiled {c_state}")
    if COMPILE_KWARGS["fullgraph"] and MUST_BREAK:
        from torch._dynamo.exc import Unsupported
        if not (isinstance(c_exc, Unsupported) or (e_exc is not None and same_error(e_exc, c_exc))):
            problems.append(tag + f"fullgraph=True must raise on a graph break; compiled {c_exc!r}")
        return
    for name, e in e_in.items():
        if isinstance(e, torch.Tensor):
            compare(tag + f"input {name} after the call", e, c_in[name], r_in[name], 1.0,
                    problems, ops=EXACT_OPS)
            storage_outside(tag + f"input {name}", e, c_in[name], problems)
    if e_exc is not None or c_exc is not None:
        if e_exc is None or c_exc is None or not same_error(e_exc, c_exc):
            problems.append(tag + f"outcome: eager {e_exc!r}, compiled {c_exc!r}")
        return
    if len(e_out) != len(c_out):
        problems.append(tag + f"eager returned {len(e_out)} values, compiled {len(c_out)}")
        return
    kappas = [score_conditioning(r_in[q].permute(p) if p else r_in[q],
                                 r_in[k].permute(p) if p else r_in[k], scale)
              for q, k, scale, p, _, _ in SCORES if isinstance(r_in.get(q), torch.Tensor)
              and isinstance(r_in.get(k), torch.Tensor)]
    kappa = max([1.0] + kappas)
    for j, (e, c, r) in enumerate(zip(e_out, c_out, r_out or [None] * len(e_out))):
        if input_name(e_in, e) != input_name(c_in, c):
            problems.append(tag + f"output[{j}] is input {input_name(e_in, e)} in eager but "
                            f"{input_name(c_in, c)} in compiled")
        ops = 0 if e_names[j] in FED else EXACT_OPS
        compare(tag + f"output[{j}]", e, c, r, kappa, problems, ops=ops)
        if isinstance(e, torch.backends.cuda.SDPAParams):
            for attr in ("query", "key", "value", "attn_mask", "dropout", "is_causal",
                         "enable_gqa"):
                fe, fc = getattr(e, attr), getattr(c, attr)
                if input_name(e_in, fe) != input_name(c_in, fc):
                    problems.append(tag + f"output[{j}].{attr} is input {input_name(e_in, fe)} "
                                    f"in eager but {input_name(c_in, fc)} in compiled")
                compare(tag + f"output[{j}].{attr}", fe, fc, getattr(r, attr, None), kappa,
                        problems, ops=ops)
    if BACKWARD:
        (e_g, e_gexc), (c_g, c_gexc), (r_g, _) = e_grads, c_grads, r_grads
        if e_gexc is not None or c_gexc is not None:
            if e_gexc is None or c_gexc is None or not same_error(e_gexc, c_gexc):
                problems.append(tag + f"backward: eager {e_gexc!r}, compiled {c_gexc!r}")
            return
        g_max = max([upstream(t, j).abs().max().item() for j, t in enumerate(e_out)
                     if isinstance(t, torch.Tensor) and t.numel()] or [0.0])
        terms = {}
        for q, k, scale, p, v, m in SCORES:
            qkv = [r_in.get(n) for n in (q, k, v)]
            if all(isinstance(t, torch.Tensor) for t in qkv):
                qkv = [t.permute(p) if p else t for t in qkv]
                for role, bound in gradient_bounds(*qkv, scale, g_max).items():
                    name = dict(query=q, key=k, value=v, mask=m)[role]
                    terms[name] = max(terms.get(name, 0.0), bound)
        for name, ge in e_g.items():
            gc = c_g.get(name)
            if (ge is None) != (gc is None):
                problems.append(tag + f"grad {name}: eager {ge is not None}, compiled "
                                f"{gc is not None} (has a gradient)")
            elif ge is not None:
                compare(tag + f"grad {name}", ge, gc, (r_g or {}).get(name), kappa, problems,
                        strides=False, terms=terms.get(name, 0.0))


def mark(inputs):
    for name, dims in MARK_DYNAMIC.items():
        for dim in dims:
            torch._dynamo.mark_dynamic(inputs[name], dim)
    return inputs


def main():
    import torch._inductor.config
    torch._inductor.config.fallback_random = True  # Inductor draws as eager does
    problems = []
    start = backend_state()
    counter = CompileCounterWithBackend(BACKEND)
    compiled_fn = torch.compile(fn, backend=counter, **COMPILE_KWARGS)
    first_frames = first_raised = None
    for i, (context, salt, grow) in enumerate(zip(CALLS, SALTS, GROWS)):
        eager = call(fn, make_inputs(salt=salt, grow=grow), context, start)
        with MathSDPA() if MATH_REFERENCE else contextlib.nullcontext():
            ref = call(fn, make_inputs(torch.float64, salt, grow), context, start,
                       [getattr(t, "dtype", None) for t in eager[0] or ()])
        before = counter.frame_count
        compiled = call(compiled_fn, mark(make_inputs(salt=salt, grow=grow)), context, start)
        if first_frames is None:
            first_frames, first_raised = counter.frame_count, compiled[1] is not None
        elif RECOMPILES and compiled[1] is None and                 counter.frame_count - before not in RECOMPILES[i]:
            problems.append(f"recompile: call {i} (lengths +{grow}) compiled "
                            f"{counter.frame_count - before} graph(s); the dynamic-shape "
                            f"rules allow {RECOMPILES[i]}")
        check_call(i, eager, ref, compiled, problems)
    if not first_raised:
        before = counter.frame_count
        call(compiled_fn, mark(make_inputs(salt=SALTS[0], grow=GROWS[0])), CALLS[0], start)
        if counter.frame_count != before:
            problems.append("recompile: repeating the first call with equal inputs compiled "
                            f"{counter.frame_count - before} more graph(s)")
    print(f"graphs compiled by the first call: {first_frames}; frame model: {EXPECTED_FRAMES}")
    if EXPECTED_FRAMES is not None and first_frames != EXPECTED_FRAMES and not first_raised:
        problems.append(f"frames: {first_frames} graphs, the frame model predicts "
                        f"{EXPECTED_FRAMES}")
    for p in problems:
        print("DIVERGENCE:", p)
    print("diverges" if problems else "no divergence")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
