"""sdpa-fuzz, backend 'eager': compiled returns a different structure from eager
(structure:return:pytree). Exits 1 while it diverges, 0 once fixed."""
import contextlib
import torch
from torch.nn.attention import SDPBackend, _cur_sdpa_kernel_backends, sdpa_kernel

def fn(q, k, v):
    r = _cur_sdpa_kernel_backends()
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

def call(f, i=0):
    t = inputs()
    restore(START)
    with (contextlib.nullcontext(),
          sdpa_kernel([SDPBackend.MATH]))[i]:
        return t, f(**t)

compiled = torch.compile(fn, backend='eager')
with contextlib.suppress(Exception):  # raises in eager too, if at all
    call(compiled, 0)
te, out_e = call(fn, 1)
tc, out_c = call(compiled, 1)
se, sc = (torch.utils._pytree.tree_structure(x) for x in (out_e, out_c))
print("eager returns   ", se)
print("compiled returns", sc)
raise SystemExit(se != sc)
