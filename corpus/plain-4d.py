"""sdpa-fuzz repro: runs fn eagerly and compiled on identical inputs and compares both with a float64 run.

Exit status 1 while the divergence holds, 0 once it is gone."""
import sys
import torch
import torch.nn.functional as F


def fn(q, k, v):
    out = F.scaled_dot_product_attention(q, k, v)
    return out

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
        if dtype == torch.bool:
            base = keep
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


def make_inputs():
    return {
        'q': build_tensor((2, 3, 5, 8), 'float32', 'normal', 'contiguous', 1),
        'k': build_tensor((2, 3, 7, 8), 'float32', 'normal', 'contiguous', 2),
        'v': build_tensor((2, 3, 7, 8), 'float32', 'normal', 'contiguous', 3),
    }

BACKEND = 'inductor'
TOLERANCES = {'float64': (4.0, 1.4210854715202004e-14), 'float32': (4.0, 7.62939453125e-06), 'bfloat16': (4.0, 0.0078125), 'float16': (4.0, 0.0009765625)}  # dtype -> (fudge factor, relative floor)

def flat(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def upcast(inputs):
    return {n: t.detach().to(torch.float64) if t.is_floating_point() else t
            for n, t in inputs.items()}


def run(f, inputs):
    try:
        return flat(f(**inputs)), None
    except Exception as exc:  # the outcome is part of what is compared
        return None, exc


def compare(name, e, c, r, problems):
    if not isinstance(e, torch.Tensor):
        if e != c:
            problems.append(f"{name}: eager {e!r} but compiled {c!r}")
        return
    if (e.shape, e.dtype, e.device) != (c.shape, c.dtype, c.device):
        problems.append(f"{name}: eager {tuple(e.shape)} {e.dtype} {e.device}, "
                        f"compiled {tuple(c.shape)} {c.dtype} {c.device}")
        return
    if not e.is_floating_point():
        if not torch.equal(e, c):
            problems.append(f"{name}: values differ")
        return
    e, c, r = e.detach(), c.detach(), r.detach().to(torch.float64)
    for what, test in (("NaN", torch.isnan), ("+inf", torch.isposinf), ("-inf", torch.isneginf)):
        if not torch.equal(test(e), test(c)):
            problems.append(f"{name}: {what} positions differ")
    ok = torch.isfinite(e) & torch.isfinite(c) & torch.isfinite(r)
    if ok.any():
        err_e = (e.double() - r)[ok].abs().max().item()
        err_c = (c.double() - r)[ok].abs().max().item()
        fudge, floor = TOLERANCES[str(e.dtype).replace("torch.", "")]
        allowed = fudge * max(err_e, floor * r[ok].abs().max().item(), 1e-300)
        print(f"{name}: error vs float64: eager {err_e:.3g}, compiled {err_c:.3g}, "
              f"allowed {allowed:.3g}")
        if err_c > allowed:
            problems.append(f"{name}: compiled error {err_c:.3g} > allowed {allowed:.3g}")


def main():
    problems = []
    eager_out, eager_exc = run(fn, make_inputs())
    ref_out, _ = run(fn, upcast(make_inputs()))
    compiled_fn = torch.compile(fn, backend=BACKEND, fullgraph=False, dynamic=None)
    compiled_out, compiled_exc = run(compiled_fn, make_inputs())
    if eager_exc is not None or compiled_exc is not None:
        if eager_exc is None or compiled_exc is None or not any(
                isinstance(x, type(eager_exc)) for x in chain(compiled_exc)):
            problems.append(f"outcome: eager {eager_exc!r}, compiled {compiled_exc!r}")
    elif len(eager_out) != len(compiled_out):
        problems.append(f"eager returned {len(eager_out)} values, compiled {len(compiled_out)}")
    else:
        for i, (e, c, r) in enumerate(zip(eager_out, compiled_out, ref_out)):
            compare(f"output[{i}]", e, c, r, problems)
    for p in problems:
        print("DIVERGENCE:", p)
    print("diverges" if problems else "no divergence")
    return 1 if problems else 0


def chain(exc):
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


if __name__ == "__main__":
    sys.exit(main())
