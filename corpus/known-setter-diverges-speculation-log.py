"""sdpa-fuzz, backend 'aot_eager': compiled and eager raise differently
(outcome:call:compiled-raised-internal-SpeculationLogDivergence). Exits 1 while it diverges, 0 once fixed."""
import torch
from torch.nn.attention import SDPBackend, _cur_sdpa_kernel_backends, sdpa_kernel

def fn(q, k, v):
    backends1 = _cur_sdpa_kernel_backends()
    torch.backends.cuda.enable_flash_sdp(False)
    backends2 = _cur_sdpa_kernel_backends(with_priority=True)
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
    q = torch.randn((1, 1, 1), generator=torch.Generator().manual_seed(0))
    k = torch.randn((1, 1, 1), generator=torch.Generator().manual_seed(0))
    v = torch.randn((1, 1, 1), generator=torch.Generator().manual_seed(0))
    return {'q': q, 'k': k, 'v': v}

def call(f):
    t = inputs()
    restore(START)
    try:
        return t, f(**t)
    except Exception as e:
        return t, e

compiled = torch.compile(fn, backend='aot_eager')
_, e = call(fn)
_, c = call(compiled)
root = lambda e: root(e.__cause__ or e.__context__) if isinstance(e, Exception) and (e.__cause__ or e.__context__) else e  # the innermost exception, through Dynamo's wrappers
print("eager:   ", repr(e), "\n  innermost:", repr(root(e)))
print("compiled:", repr(c), "\n  innermost:", repr(root(c)))
x = torch._dynamo.exc  # a compiler failure, or Dynamo refusing the program, is no user error
failed = isinstance(c, (x.BackendCompilerFailed, x.InternalTorchDynamoError)) or isinstance(c, x.Unsupported) and c.__cause__ is None
raise SystemExit((e is None) != (c is None) or e is not None and (failed or type(root(e)) is not type(root(c))))
