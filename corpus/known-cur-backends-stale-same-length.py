"""sdpa-fuzz, backend 'eager': compiled values differ from eager beyond rounding
(values:read_backends:SDPBackend). Exits 1 while it diverges, 0 once fixed."""
import contextlib
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, _cur_sdpa_kernel_backends, sdpa_kernel

def fn(q, k, v):
    out1 = F.scaled_dot_product_attention(q, k, v)
    out2 = F.scaled_dot_product_attention(q, k, v)
    backends3 = _cur_sdpa_kernel_backends()
    out4 = F.scaled_dot_product_attention(q, k, v)
    return q, k, backends3

FLAGS = ("flash", "mem_efficient", "math", "cudnn")
def state():  # which SDPA backends are enabled, and their priority order
    return ({f: getattr(torch.backends.cuda, f"{f}_sdp_enabled")() for f in FLAGS},
            list(torch._C._get_sdp_priority_order()))
START = state()
def restore(s):
    [getattr(torch.backends.cuda, f"enable_{f}_sdp")(on) for f, on in s[0].items()]
    torch._C._set_sdp_priority_order(s[1])

def inputs():
    q = torch.randn((1, 1, 1), generator=torch.Generator().manual_seed(0))
    k = torch.randn((1, 1, 1), generator=torch.Generator().manual_seed(0))
    v = torch.randn((1, 1, 1), generator=torch.Generator().manual_seed(0))
    return {'q': q, 'k': k, 'v': v}

def call(f, i=0):
    t = inputs()
    restore(START)
    with (sdpa_kernel([SDPBackend.MATH, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION]),
          sdpa_kernel([SDPBackend.MATH, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.OVERRIDEABLE]))[i]:
        return t, f(**t)

compiled = torch.compile(fn, backend='eager')
with contextlib.suppress(Exception):  # raises in eager too, if at all
    call(compiled, 0)
te, out_e = call(fn, 1)
tc, out_c = call(compiled, 1)
e, c = out_e[2][0], out_c[2][0]
print("eager:   ", e)
print("compiled:", c)
raise SystemExit(not (torch.equal(e, c) if isinstance(e, torch.Tensor) else e == c))
