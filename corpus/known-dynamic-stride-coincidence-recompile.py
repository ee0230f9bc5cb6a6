"""sdpa-fuzz, backend 'inductor': Dynamo recompiles where its guards should hold
(recompile:call:size-dynamic). Exits 1 while it diverges, 0 once fixed."""
import contextlib
import torch
import torch.nn.functional as F

def fn(q, k, v):
    out = F.scaled_dot_product_attention(q, k, v)
    return out

def inputs(i=0):
    q = torch.randn((1, 1, (2, 3)[i], 1,), generator=torch.Generator().manual_seed(0))
    k = torch.randn((1, 1, (9, 10)[i], 1,), generator=torch.Generator().manual_seed(0))
    v = torch.randn((1, 1, (9, 10)[i], 1,), generator=torch.Generator().manual_seed(0))
    v = torch.stack([v, torch.zeros_like(v)], -1).flatten(-2)[..., ::2]
    return {'q': q, 'k': k, 'v': v}

def call(f, i=0):
    t = inputs(i)
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

counter = Accepted('inductor')
compiled = torch.compile(fn, backend=counter, dynamic=True)
with contextlib.suppress(Exception):  # raises in eager too, if at all
    call(compiled, 0)
before = counter.frame_count
call(compiled, 1)
print("graphs compiled by call 1:", counter.frame_count - before, "- allowed: 0")
raise SystemExit(counter.frame_count - before not in (0,))
