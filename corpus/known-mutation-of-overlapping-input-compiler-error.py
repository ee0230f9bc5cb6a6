"""sdpa-fuzz, backend 'inductor': compiled and eager raise differently
(outcome:call:RuntimeError-vs-internal-RuntimeError). Exits 1 while it diverges, 0 once fixed."""
import torch

def fn(q, k, v, mask):
    v.mul_(1.0)
    return q

def inputs():
    q = torch.randn((1, 1, 1), generator=torch.Generator().manual_seed(0))
    k = torch.randn((1, 2, 1), generator=torch.Generator().manual_seed(0))
    v = torch.randn((1, 1, 1), generator=torch.Generator().manual_seed(0)).expand((1, 2, 1))
    mask = torch.rand((1, 2), generator=torch.Generator().manual_seed(0)) < 0.7
    return {'q': q, 'k': k, 'v': v, 'mask': mask}

def call(f):
    t = inputs()
    try:
        return t, f(**t)
    except Exception as e:
        return t, e

compiled = torch.compile(fn, backend='inductor')
_, e = call(fn)
_, c = call(compiled)
root = lambda e: root(e.__cause__ or e.__context__) if isinstance(e, Exception) and (e.__cause__ or e.__context__) else e  # the innermost exception, through Dynamo's wrappers
print("eager:   ", repr(e), "\n  innermost:", repr(root(e)))
print("compiled:", repr(c), "\n  innermost:", repr(root(c)))
x = torch._dynamo.exc  # a compiler failure, or Dynamo refusing the program, is no user error
failed = isinstance(c, (x.BackendCompilerFailed, x.InternalTorchDynamoError)) or isinstance(c, x.Unsupported) and c.__cause__ is None
raise SystemExit((e is None) != (c is None) or e is not None and (failed or type(root(e)) is not type(root(c))))
