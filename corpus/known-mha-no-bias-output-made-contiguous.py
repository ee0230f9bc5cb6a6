"""sdpa-fuzz, backend 'inductor': compiled output strides differ from eager
(stride:module_call:float32). Exits 1 while it diverges, 0 once fixed."""
import torch

def fn(x, attn, w_in, w_out):
    out = attn(x, x, x, need_weights=False)[0]
    return out

def inputs():
    x = torch.randn((2, 3, 4), generator=torch.Generator().manual_seed(0))
    w_in = torch.randn((12, 4), generator=torch.Generator().manual_seed(0))
    w_out = torch.randn((4, 4), generator=torch.Generator().manual_seed(0))
    t = {'x': x, 'w_in': w_in, 'w_out': w_out}
    t['attn'] = torch.nn.MultiheadAttention(embed_dim=4, num_heads=2, dropout=0.0, bias=False, batch_first=True, device='meta', dtype=t['w_in'].dtype).train(False)
    t['attn'].in_proj_weight = t['w_in'] = torch.nn.Parameter(t['w_in'], requires_grad=t['w_in'].requires_grad)
    t['attn'].out_proj.weight = t['w_out'] = torch.nn.Parameter(t['w_out'], requires_grad=t['w_out'].requires_grad)
    return t

def call(f):
    t = inputs()
    return t, f(**t)

compiled = torch.compile(fn, backend='inductor')
_, e = call(fn)
_, c = call(compiled)
strides = lambda x: [s for n, s in zip(x.shape, x.stride()) if n > 1]
print("strides of the dims of size > 1: eager", strides(e), "compiled", strides(c))
raise SystemExit(strides(e) != strides(c))
