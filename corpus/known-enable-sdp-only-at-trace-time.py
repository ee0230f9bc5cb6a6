"""sdpa-fuzz, backend 'aot_eager': the SDPA backend state after the call differs from eager
(backend-state:after-call:enabled). Exits 1 while it diverges, 0 once fixed."""
import contextlib
import torch

def fn(q, k, v):
    torch.backends.cuda.enable_math_sdp(False)
    y = q + 1.0
    return y

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
    try:
        f(**t)
    except Exception as e:  # the state after an error counts too
        print(f"{f.__name__} raised {e!r}")
    return state()

compiled = torch.compile(fn, backend='aot_eager')
with contextlib.suppress(Exception):  # raises in eager too, if at all
    call(compiled, 0)
after_eager = call(fn, 1)
after_compiled = call(compiled, 1)
print("SDPA backend state after the call: eager  ", after_eager)
print("                                   compiled", after_compiled)
raise SystemExit(after_eager != after_compiled)
