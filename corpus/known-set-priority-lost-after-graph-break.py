"""sdpa-fuzz, backend 'eager': compiled values differ from eager beyond rounding
(values:read_backends:SDPBackend). Exits 1 while it diverges, 0 once fixed."""
import torch
from torch.nn.attention import SDPBackend, _cur_sdpa_kernel_backends, sdpa_kernel

def fn(q, k, v):
    with sdpa_kernel([SDPBackend.MATH, SDPBackend.FLASH_ATTENTION], set_priority=True):
        r = _cur_sdpa_kernel_backends(with_priority=True)
    return r

FLAGS = ("flash", "mem_efficient", "math", "cudnn")
def state():  # which SDPA backends are enabled, and their priority order
    return ({f: getattr(torch.backends.cuda, f"{f}_sdp_enabled")() for f in FLAGS},
            list(torch._C._get_sdp_priority_order()))
START = state()
def restore(s):
    [getattr(torch.backends.cuda, f"enable_{f}_sdp")(on) for f, on in s[0].items()]
    torch._C._set_sdp_priority_order(s[1])

def inputs():
    q = torch.randn((1, 2, 4, 8), generator=torch.Generator().manual_seed(1))
    k = torch.randn((1, 2, 4, 8), generator=torch.Generator().manual_seed(2))
    v = torch.randn((1, 2, 4, 8), generator=torch.Generator().manual_seed(3))
    return {'q': q, 'k': k, 'v': v}

def call(f):
    t = inputs()
    restore(START)
    return t, f(**t)

compiled = torch.compile(fn, backend='eager')
te, out_e = call(fn)
tc, out_c = call(compiled)
e, c = out_e[0], out_c[0]
print("eager:   ", e)
print("compiled:", c)
raise SystemExit(not (torch.equal(e, c) if isinstance(e, torch.Tensor) else e == c))
