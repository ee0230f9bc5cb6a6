"""sdpa-fuzz, backend 'inductor': compiled output strides differ from eager
(stride:hand_attention:float16). Exits 1 while it diverges, 0 once fixed."""
import torch

def fn(q, k, v):
    out_w = q @ k.transpose(-2, -1)
    out_w = out_w / 1.4142135623730951
    out_w = out_w.softmax(-1)
    out = out_w @ v
    return out

def inputs():
    q = torch.randn((1, 1, 2, 2), generator=torch.Generator().manual_seed(0)).to(torch.float16).to('cuda')
    k = torch.randn((1, 1, 2, 2), generator=torch.Generator().manual_seed(0)).to(torch.float16).to('cuda')
    v = torch.randn((1, 1, 2, 2), generator=torch.Generator().manual_seed(0)).to(torch.float16).to('cuda')
    return {'q': q, 'k': k, 'v': v}

def call(f):
    t = inputs()
    return t, f(**t)

compiled = torch.compile(fn, backend='inductor')
_, e = call(fn)
_, c = call(compiled)
strides = lambda x: [s for n, s in zip(x.shape, x.stride()) if n > 1]
print("strides of the dims of size > 1: eager", strides(e), "compiled", strides(c))
raise SystemExit(strides(e) != strides(c))
