"""sdpa-fuzz, backend 'aot_eager': Dynamo recompiles where its guards should hold
(recompile:repeat:equal-inputs). Exits 1 while it diverges, 0 once fixed."""
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, _cur_sdpa_kernel_backends, sdpa_kernel

def fn(q, k, v):
    backends1 = _cur_sdpa_kernel_backends(with_priority=True)
    torch.backends.cuda.enable_flash_sdp(False)
    backends2 = _cur_sdpa_kernel_backends(with_priority=True)
    out3 = F.scaled_dot_product_attention(q, k, v)
    return out3, backends2

FLAGS = ("flash", "mem_efficient", "math", "cudnn")
def state():  # which SDPA backends are enabled, and their priority order
    return ({f: getattr(torch.backends.cuda, f"{f}_sdp_enabled")() for f in FLAGS},
            list(torch._C._get_sdp_priority_order()))
START = state()
def restore(s):
    [getattr(torch.backends.cuda, f"enable_{f}_sdp")(on) for f, on in s[0].items()]
    torch._C._set_sdp_priority_order(s[1])

def inputs():
    q = torch.randn((1, 1, 1, 1), generator=torch.Generator().manual_seed(0))
    k = torch.randn((1, 1, 2, 1), generator=torch.Generator().manual_seed(0))
    v = torch.randn((1, 1, 2, 1), generator=torch.Generator().manual_seed(0))
    return {'q': q, 'k': k, 'v': v}

def call(f):
    t = inputs()
    restore(START)
    try:
        return t, f(**t)
    except Exception as e:
        return t, e

import torch._dynamo.testing

class Accepted(torch._dynamo.testing.CompileCounterWithBackend):
    """Graphs the backend accepted, as sdpa-fuzz counts them: less those it threw back
    with RestartAnalysis (AOTAutograd does for a graph with a symbolic float)."""

    def __call__(self, gm, example_inputs):
        try:
            return super().__call__(gm, example_inputs)
        except torch._dynamo.exc.RestartAnalysis:
            self.frame_count -= 1
            raise

counter = Accepted('aot_eager')
compiled = torch.compile(fn, backend=counter)
call(compiled)
before = counter.frame_count
call(compiled)
print("graphs compiled by repeating the first call with equal inputs:", counter.frame_count - before)
raise SystemExit(counter.frame_count != before)
