"""sdpa-fuzz, backend 'aot_eager': compiled and eager raise differently
(outcome:call:compiled-raised-internal-RuntimeError). Exits 1 while it diverges, 0 once fixed."""
import torch

def fn(x, attn, attn_in_proj_weight, attn_in_proj_bias, attn_out_proj_weight, attn_out_proj_bias, k, v):
    out = attn(x, k, v, need_weights=False)[0]
    return out

def inputs():
    x = torch.randn((1, 1, 2), generator=torch.Generator().manual_seed(0))
    attn_in_proj_weight = torch.randn((6, 2), generator=torch.Generator().manual_seed(0)).to(torch.bfloat16).requires_grad_()
    attn_in_proj_bias = torch.randn((6,), generator=torch.Generator().manual_seed(0)).to(torch.bfloat16).requires_grad_()
    attn_out_proj_weight = torch.randn((2, 2), generator=torch.Generator().manual_seed(0)).to(torch.bfloat16).requires_grad_()
    attn_out_proj_bias = torch.randn((2,), generator=torch.Generator().manual_seed(0)).to(torch.bfloat16).requires_grad_()
    k = torch.randn((1, 1, 2), generator=torch.Generator().manual_seed(0))
    v = torch.randn((1, 1, 2), generator=torch.Generator().manual_seed(0))
    t = {'x': x, 'attn_in_proj_weight': attn_in_proj_weight, 'attn_in_proj_bias': attn_in_proj_bias, 'attn_out_proj_weight': attn_out_proj_weight, 'attn_out_proj_bias': attn_out_proj_bias, 'k': k, 'v': v}
    t['attn'] = torch.nn.MultiheadAttention(embed_dim=2, num_heads=1, dropout=0.0, device='meta', dtype=t['attn_in_proj_weight'].dtype).train(False)
    t['attn'].in_proj_weight = t['attn_in_proj_weight'] = torch.nn.Parameter(t['attn_in_proj_weight'], requires_grad=t['attn_in_proj_weight'].requires_grad)
    t['attn'].in_proj_bias = t['attn_in_proj_bias'] = torch.nn.Parameter(t['attn_in_proj_bias'], requires_grad=t['attn_in_proj_bias'].requires_grad)
    t['attn'].out_proj.weight = t['attn_out_proj_weight'] = torch.nn.Parameter(t['attn_out_proj_weight'], requires_grad=t['attn_out_proj_weight'].requires_grad)
    t['attn'].out_proj.bias = t['attn_out_proj_bias'] = torch.nn.Parameter(t['attn_out_proj_bias'], requires_grad=t['attn_out_proj_bias'].requires_grad)
    return t

def call(f):
    t = inputs()
    with torch.autocast('cpu', dtype=torch.float16):
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
