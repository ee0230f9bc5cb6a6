"""sdpa-fuzz, backend 'eager': an input's value after the call differs between eager and compiled
(mutation:input-after-error:float32). Exits 1 while it diverges, 0 once fixed."""
import torch
import torch.nn.functional as F

def fn(q, k, v, mask):
    q.add_(1.0)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=True)
    return q

def inputs():
    q = torch.randn((1, 1, 1), generator=torch.Generator().manual_seed(0))
    k = torch.randn((1, 1, 1), generator=torch.Generator().manual_seed(0))
    v = torch.randn((1, 1, 1), generator=torch.Generator().manual_seed(0))
    mask = torch.rand((1, 1), generator=torch.Generator().manual_seed(0)) < 0.7
    return {'q': q, 'k': k, 'v': v, 'mask': mask}

def call(f):
    t = inputs()
    try:
        return t, f(**t)
    except Exception as e:
        return t, e

compiled = torch.compile(fn, backend='eager')
te, out_e = call(fn)
tc, out_c = call(compiled)
e, c = te['q'].detach(), tc['q'].detach()
print("input q after the call: eager   ", e.flatten()[:6].tolist())
print("                   compiled", c.flatten()[:6].tolist())
ok = e.isfinite() & c.isfinite()
err = (c.double() - e.double())[ok].abs().max().item() if ok.any() else 0.0
allowed = max(2 * 1.1920928955078125e-07 * e[ok].abs().max().item() if ok.any() else 0.0, 2.802596928649634e-45)  # 2 ulp(s) of float32
print(f"compiled differs from eager by {err:.3g}; allowed {allowed:.3g}")
raise SystemExit(err > allowed or not torch.equal(e.isnan(), c.isnan()))
