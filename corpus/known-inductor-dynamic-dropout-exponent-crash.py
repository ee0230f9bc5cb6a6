"""sdpa-fuzz, backend 'inductor': compiled and eager raise differently
(outcome:call:compiled-raised-internal-ValueError). Exits 1 while it diverges, 0 once fixed."""
import torch
import torch.nn.functional as F

def fn(x, w_qkv):
    b, l = x.shape[0], x.shape[1]
    out_qkv = F.linear(x, w_qkv)
    out_q, out_k, out_v = out_qkv.chunk(3, dim=-1)
    out_q = out_q.view(b, l, 2, 2).transpose(1, 2)
    out_k = out_k.view(b, l, 2, 2).transpose(1, 2)
    out_v = out_v.view(b, l, 2, 2).transpose(1, 2)
    out = F.scaled_dot_product_attention(out_q, out_k, out_v, dropout_p=0.1)
    out = out.transpose(1, 2).flatten(2)
    return out

def inputs():
    x = torch.randn((2, 31, 1), generator=torch.Generator().manual_seed(0))
    w_qkv = torch.randn((12, 1), generator=torch.Generator().manual_seed(0))
    return {'x': x, 'w_qkv': w_qkv}

def call(f):
    t = inputs()
    torch.manual_seed(20240607)  # eager and compiled draw alike
    try:
        return t, f(**t)
    except Exception as e:
        return t, e

torch._inductor.config.fallback_random = True  # draw as eager does
compiled = torch.compile(fn, backend='inductor', dynamic=True)
_, e = call(fn)
_, c = call(compiled)
root = lambda e: root(e.__cause__ or e.__context__) if isinstance(e, Exception) and (e.__cause__ or e.__context__) else e  # the innermost exception, through Dynamo's wrappers
print("eager:   ", repr(e), "\n  innermost:", repr(root(e)))
print("compiled:", repr(c), "\n  innermost:", repr(root(c)))
x = torch._dynamo.exc  # a compiler failure, or Dynamo refusing the program, is no user error
failed = isinstance(c, (x.BackendCompilerFailed, x.InternalTorchDynamoError)) or isinstance(c, x.Unsupported) and c.__cause__ is None
raise SystemExit((e is None) != (c is None) or e is not None and (failed or type(root(e)) is not type(root(c))))
