"""sdpa-fuzz, backend 'eager': an input's value after the call differs between eager and compiled
(mutation:input:float32). Exits 1 while it diverges, 0 once fixed."""
import torch
from torch.nn.attention import SDPBackend, _cur_sdpa_kernel_backends, sdpa_kernel

def fn(q, k, v, mask):
    backends1 = _cur_sdpa_kernel_backends()
    q.add_(1.0)
    torch.backends.cuda.enable_cudnn_sdp(False)
    t2 = q + 1.0
    backends3 = _cur_sdpa_kernel_backends(with_priority=True)
    return k

FLAGS = ("flash", "mem_efficient", "math", "cudnn")
def state():  # which SDPA backends are enabled, and their priority order
    return ({f: getattr(torch.backends.cuda, f"{f}_sdp_enabled")() for f in FLAGS},
            list(torch._C._get_sdp_priority_order()))
START = state()
def restore(s):
    [getattr(torch.backends.cuda, f"enable_{f}_sdp")(on) for f, on in s[0].items()]
    torch._C._set_sdp_priority_order(s[1])

def inputs():
    q = torch.randn((2, 1, 2), generator=torch.Generator().manual_seed(14430580))
    k = torch.randn((2, 1, 2), generator=torch.Generator().manual_seed(129276))
    v = torch.randn((2, 1, 2), generator=torch.Generator().manual_seed(8026))
    mask = torch.rand((1, 1), generator=torch.Generator().manual_seed(16599)) < 0.7
    return {'q': q, 'k': k, 'v': v, 'mask': mask}

def call(f):
    t = inputs()
    restore(START)
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
allowed = max(3 * 1.1920928955078125e-07 * e[ok].abs().max().item() if ok.any() else 0.0, 4.203895392974451e-45)  # 3 ulp(s) of float32
print(f"compiled differs from eager by {err:.3g}; allowed {allowed:.3g}")
raise SystemExit(err > allowed or not torch.equal(e.isnan(), c.isnan()))
