"""sdpa-fuzz repro: runs fn eagerly, compiled and in float64 on identical inputs, once
per outer sdpa_kernel context, and compares outputs, identities, inputs after the call,
the global SDPA backend state and Dynamo's frame count.

Exit status 1 while a divergence holds, 0 once it is gone."""
import sys
import torch
import torch.nn.functional as F


def fn(q, k, v):
    out1 = F.scaled_dot_product_attention(q, k, v)
    torch.backends.cuda.enable_flash_sdp(False)
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
    }
    if dtype is not None:
        t = {n: x.detach().to(dtype).requires_grad_(x.requires_grad)
             if x.is_floating_point() else x
             for n, x in t.items()}
    return t

BACKEND = 'aot_eager'
COMPILE_KWARGS = {'fullgraph': False, 'dynamic': None}
CALLS = [(['FLASH_ATTENTION'], False)]  # outer sdpa_kernel (backends, set_priority) per call, or None
SALTS = [0]  # per call: 0, or the seed variant whose input values it gets
GROWS = [0]  # per call: how much longer L and S are
RECOMPILES = None  # per call: graphs it may compile, if sizes vary
EXPECTED_FRAMES = 1  # the frame model's count
MUST_BREAK = False  # so fullgraph=True must raise
NUMERIC = True  # False: dropout draws are random
BACKWARD = False  # run backward from seeded upstream gradients
TOLERANCES = {'float64': (4.0, 1.7763568394002505e-15, 1.7763568394002505e-15, 4e-323), 'float32': (4.0, 9.5367431640625e-07, 9.5367431640625e-07, 1.1210387714598537e-44), 'bfloat16': (4.0, 0.0078125, 9.5367431640625e-07, 9.183549615799121e-41), 'float16': (4.0, 0.0009765625, 9.5367431640625e-07, 5.960464477539063e-08)}  # dtype -> (fudge, output floor, score floor, absolute floor)
SCORES = [('q', 'k', None, (), 'v', None)]  # (query, key, scale, permutation, value, mask) per attention
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
    """Per input role, a bound on the terms that attention's backward sums to its gradient.

    A gradient is a sum with cancellation (`dS = P * (dP - rowsum(dP * P))`), so its own
    magnitude says nothing about the rounding in it; the terms' magnitudes do. With
    `dP = g @ v^T` bounded by `Ev * |g| * |v|`: the query's terms by
    `2 |scale| S |dP| |k|`, the key's by `2 |scale| L |dP| |q|`, the value's by `L |g|`,
    and an additive mask's by `2 |dP|`. Any implementation computing in a precision may
    be off by about its eps times these.
    """
    q, k, v = (t.detach().double().abs() for t in (query, key, value))
    if min(q.numel(), k.numel(), v.numel()) == 0:
        return {}
    s = abs(scale) if scale is not None else q.size(-1) ** -0.5
    L, S = q.size(-2), k.size(-2)
    d_p = v.size(-1) * upstream * v.max().item()
    return {"query": 2 * s * S * d_p * k.max().item(), "key": 2 * s * L * d_p * q.max().item(),
            "value": L * upstream, "mask": 2 * d_p}


import contextlib

from torch._dynamo.testing import CompileCounterWithBackend
from torch.utils._pytree import tree_flatten

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
    (input gradients, backward's error))"""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    set_backend_state(start)
    outer = contextlib.nullcontext() if context is None else sdpa_kernel(
        [getattr(SDPBackend, b) for b in context[0]], set_priority=context[1])
    with outer:
        try:
            leaves, error = tree_flatten(f(**inputs))[0], None
            if torch.cuda.is_initialized():
                torch.cuda.synchronize()
        except Exception as exc:  # the outcome is part of what is compared
            if type(exc).__name__ == "AcceleratorError" or "CUDA error" in str(exc):
                print("device error (the CUDA context is unusable now):", exc)
                sys.exit(3)
            leaves, error = None, exc
        state = backend_state()
        grads = gradients(leaves, inputs, rounded_to) if BACKWARD and leaves else (None, None)
    set_backend_state(start)
    return leaves, error, inputs, state, grads


def same_error(e, c):
    while c is not None:
        if isinstance(c, type(e)):
            return True
        c = c.__cause__ or c.__context__
    return False


def input_name(inputs, x):
    return next((n for n, t in inputs.items() if t is x), None)


def compare(name, e, c, r, kappa, problems, strides=True, terms=0.0):
    if not isinstance(e, torch.Tensor):
        if type(e) is not type(c) or (not isinstance(e, torch.backends.cuda.SDPAParams)
                                      and e != c):
            problems.append(f"{name}: eager {e!r}, compiled {c!r}")
        return
    if (e.shape, e.dtype, e.device) != (c.shape, c.dtype, c.device):
        problems.append(f"{name}: eager {tuple(e.shape)} {e.dtype} {e.device}, "
                        f"compiled {tuple(c.shape)} {c.dtype} {c.device}")
        return
    big = lambda t: [(d, s) for d, (n, s) in enumerate(zip(t.shape, t.stride())) if n > 1]
    if strides and big(e) != big(c):
        problems.append(f"{name}: strides eager {e.stride()}, compiled {c.stride()}")
    if not NUMERIC:
        return
    if not e.is_floating_point():
        if not torch.equal(e, c):
            problems.append(f"{name}: values differ")
        return
    e, c = e.detach(), c.detach()
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


def check_call(i, eager, ref, compiled, problems):
    (e_out, e_exc, e_in, e_state, e_grads), (r_out, _, r_in, _, r_grads), \
        (c_out, c_exc, c_in, c_state, c_grads) = eager, ref, compiled
    tag = f"call {i}: "
    if e_state != c_state:  # compared whatever the outcome: a raising call must clean up too
        problems.append(tag + f"SDPA backend state after the call: eager {e_state}, "
                        f"compiled {c_state}")
    if COMPILE_KWARGS["fullgraph"] and MUST_BREAK:
        from torch._dynamo.exc import Unsupported
        if not (isinstance(c_exc, Unsupported) or (e_exc is not None and same_error(e_exc, c_exc))):
            problems.append(tag + f"fullgraph=True must raise on a graph break; compiled {c_exc!r}")
        return
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
        compare(tag + f"output[{j}]", e, c, r, kappa, problems)
        if isinstance(e, torch.backends.cuda.SDPAParams):
            for attr in ("query", "key", "value", "attn_mask", "dropout", "is_causal",
                         "enable_gqa"):
                fe, fc = getattr(e, attr), getattr(c, attr)
                if input_name(e_in, fe) != input_name(c_in, fc):
                    problems.append(tag + f"output[{j}].{attr} is input {input_name(e_in, fe)} "
                                    f"in eager but {input_name(c_in, fc)} in compiled")
                compare(tag + f"output[{j}].{attr}", fe, fc, getattr(r, attr, None), kappa,
                        problems)
    for name, e in e_in.items():
        if isinstance(e, torch.Tensor):
            compare(tag + f"input {name} after the call", e, c_in[name], r_in[name], kappa,
                    problems)
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
