"""sdpa-fuzz, backend 'inductor': compiled values differ from eager beyond rounding
(values:hand_attention:float32). Exits 1 while it diverges, 0 once fixed."""
import torch

def fn(q, k, v):
    out_w = q @ k.transpose(-2, -1)
    out_w = out_w / 4.0
    out_w = out_w.softmax(-2)
    out = out_w @ v
    return out

def inputs(dtype=None):
    q = torch.randn((2, 4, 8, 16), generator=torch.Generator().manual_seed(0))
    k = torch.randn((2, 4, 8, 16), generator=torch.Generator().manual_seed(1))
    v = torch.randn((2, 4, 8, 16), generator=torch.Generator().manual_seed(2))
    t = {'q': q, 'k': k, 'v': v}
    if dtype is not None:  # the float64 reference: the same values
        t = {n: x.detach().to(dtype).requires_grad_(x.requires_grad)
             if x.is_floating_point() else x for n, x in t.items()}
    return t

def call(f, dtype=None):
    t = inputs(dtype)
    return t, f(**t)

def error(x):  # largest error against the float64 reference `r`, where both are finite
    ok = x.isfinite() & r.isfinite()
    return (x.double() - r.double())[ok].abs().max().item()

compiled = torch.compile(fn, backend='inductor')
_, e = call(fn)
_, c = call(compiled)
_, r = call(fn, dtype=torch.float64)
allowed = 3 * max(error(e), 6.54723e-05)  # sdpa-fuzz's rounding floor for this case
print(f"max error vs float64: eager {error(e):.3g}, compiled {error(c):.3g}, allowed {allowed:.3g}")
raise SystemExit(error(c) > allowed)
