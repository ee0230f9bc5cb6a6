"""sdpa-fuzz, backend 'eager': the SDPA backend state after the call differs from eager
(backend-state:after-call:enabled). Exits 1 while it diverges, 0 once fixed."""
import torch

def fn(q, k, v, mask):
    q.add_(1.0)
    torch.backends.cuda.enable_flash_sdp(False)
    return q

FLAGS = ("flash", "mem_efficient", "math", "cudnn")
def state():  # which SDPA backends are enabled, and their priority order
    return ({f: getattr(torch.backends.cuda, f"{f}_sdp_enabled")() for f in FLAGS},
            list(torch._C._get_sdp_priority_order()))
START = state()
def restore(s):
    [getattr(torch.backends.cuda, f"enable_{f}_sdp")(on) for f, on in s[0].items()]
    torch._C._set_sdp_priority_order(s[1])

def inputs():
    q = torch.randn((1, 1, 1, 1), generator=torch.Generator().manual_seed(0)).expand((2, 1, 1, 1))
    k = torch.randn((2, 1, 1, 1), generator=torch.Generator().manual_seed(0))
    v = torch.randn((2, 1, 1, 1), generator=torch.Generator().manual_seed(0))
    mask = torch.rand((1, 1), generator=torch.Generator().manual_seed(0)) < 0.7
    return {'q': q, 'k': k, 'v': v, 'mask': mask}

def call(f):
    t = inputs()
    restore(START)
    try:
        f(**t)
    except Exception as e:  # the state after an error counts too
        print(f"{f.__name__} raised {e!r}")
    return state()

compiled = torch.compile(fn, backend='eager')
after_eager = call(fn)
after_compiled = call(compiled)
print("SDPA backend state after the call: eager  ", after_eager)
print("                                   compiled", after_compiled)
raise SystemExit(after_eager != after_compiled)
