"""sdpa-fuzz, backend 'eager': the SDPA backend state after the call differs from eager
(backend-state:after-call:priority). Exits 1 while it diverges, 0 once fixed."""
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, _cur_sdpa_kernel_backends, sdpa_kernel

@sdpa_kernel([SDPBackend.CUDNN_ATTENTION], set_priority=True)
def _kernel_0(q, k, v, mask, t1, t2):
    inside3 = _cur_sdpa_kernel_backends()
    return inside3,

def fn(q, k, v, mask):
    q.add_(1.0)
    t1 = q + 1.0
    t2 = q + 1.0
    inside3, = _kernel_0(q, k, v, mask, t1, t2)
    out4 = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.5, is_causal=True)
    return out4, q, v, mask

FLAGS = ("flash", "mem_efficient", "math", "cudnn")
def state():  # which SDPA backends are enabled, and their priority order
    return ({f: getattr(torch.backends.cuda, f"{f}_sdp_enabled")() for f in FLAGS},
            list(torch._C._get_sdp_priority_order()))
START = state()
def restore(s):
    [getattr(torch.backends.cuda, f"enable_{f}_sdp")(on) for f, on in s[0].items()]
    torch._C._set_sdp_priority_order(s[1])

def inputs():
    q = torch.randn((1, 1, 1, 1), generator=torch.Generator().manual_seed(7963307283)).expand((2, 1, 1, 1))
    k = torch.randn((2, 1, 1, 1), generator=torch.Generator().manual_seed(7963307283))
    v = torch.randn((2, 1, 1, 1), generator=torch.Generator().manual_seed(7963307283))
    g = torch.Generator().manual_seed(7963307283)
    keep = torch.rand((1, 1), generator=g) < 0.7
    mask = (torch.randn((1, 1), generator=g) * 0.5).masked_fill(~keep, float('-inf'))
    return {'q': q, 'k': k, 'v': v, 'mask': mask}

def call(f):
    t = inputs()
    restore(START)
    torch.manual_seed(20240607)  # eager and compiled draw alike
    with sdpa_kernel([SDPBackend.MATH], set_priority=True):
        try:
            f(**t)
        except Exception as e:  # the state after an error counts too
            print(f"{f.__name__} raised {e!r}")
        return state()

torch._inductor.config.fallback_random = True  # draw as eager does
compiled = torch.compile(fn, backend='eager', fullgraph=True)
after_eager = call(fn)
after_compiled = call(compiled)
print("SDPA backend state after the call: eager  ", after_eager)
print("                                   compiled", after_compiled)
raise SystemExit(after_eager != after_compiled)
