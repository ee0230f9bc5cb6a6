"""sdpa-fuzz, backend 'inductor': compiled NaN/Inf positions differ from eager
(nan-inf:hand_attention:float32). Exits 1 while it diverges, 0 once fixed."""
import torch

def fn(q, k, v, mask):
    out_w = q @ k.transpose(-2, -1)
    out_w = out_w / 1.4142135623730951
    out_w = out_w + mask
    out_w = out_w.softmax(-1)
    out = out_w @ v
    return out

def inputs():
    q = torch.randn((1, 1, 1, 2), generator=torch.Generator().manual_seed(0))
    k = torch.randn((1, 1, 2, 2), generator=torch.Generator().manual_seed(0))
    v = torch.randn((1, 1, 2, 2), generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    keep = torch.rand((1, 2), generator=g) < 0.7
    keep[..., :1, :] = False  # the first query row attends to nothing
    mask = (torch.randn((1, 2), generator=g) * 0.5).masked_fill(~keep, float('-inf'))
    return {'q': q, 'k': k, 'v': v, 'mask': mask}

def call(f):
    t = inputs()
    return t, f(**t)

compiled = torch.compile(fn, backend='inductor')
_, e = call(fn)
_, c = call(compiled)
kinds = lambda x: (x.isnan(), x.isposinf(), x.isneginf())
print("NaN, +inf, -inf: eager", [int(k.sum()) for k in kinds(e)], "compiled", [int(k.sum()) for k in kinds(c)])
raise SystemExit(any(not torch.equal(a, b) for a, b in zip(kinds(e), kinds(c))))
