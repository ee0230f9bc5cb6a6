"""sdpa-fuzz, backend 'inductor': compiled output shape/dtype/requires_grad differs from eager
(metadata:hand_attention:float16). Exits 1 while it diverges, 0 once fixed."""
import torch

def fn(q, k, v):
    out_q = q.permute(0, 2, 1, 3)
    out_k = k.permute(0, 2, 1, 3)
    out_v = v.permute(0, 2, 1, 3)
    out_w = out_q @ out_k.transpose(-2, -1)
    out_w = out_w / 1.4142135623730951
    out_w = out_w.float()
    out_w = out_w.softmax(-1).to(torch.float16)
    out_v = out_v.to(torch.float16)
    out = out_w @ out_v
    return out

def inputs():
    q = torch.randn((2, 2, 2, 2), generator=torch.Generator().manual_seed(0))
    k = torch.randn((2, 2, 2, 2), generator=torch.Generator().manual_seed(0))
    v = torch.randn((2, 2, 2, 2), generator=torch.Generator().manual_seed(0))
    return {'q': q, 'k': k, 'v': v}

def call(f):
    t = inputs()
    return t, f(**t)

compiled = torch.compile(fn, backend='inductor')
_, e = call(fn)
_, c = call(compiled)
meta = lambda x: (tuple(x.shape), x.dtype, x.device, x.requires_grad)
print("shape, dtype, device, requires_grad: eager", meta(e))
print("                                  compiled", meta(c))
raise SystemExit(meta(e) != meta(c))
