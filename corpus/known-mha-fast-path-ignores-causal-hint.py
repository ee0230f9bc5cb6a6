"""sdpa-fuzz, backend 'eager': compiled and eager raise differently
(outcome:call:compiled-raised-RuntimeError). Exits 1 while it diverges, 0 once fixed."""
import torch

def fn(x, attn, attn_in_proj_weight, attn_in_proj_bias, attn_out_proj_weight, attn_out_proj_bias):
    out = attn(x, x, x, need_weights=False, is_causal=True)[0]
    return out

def inputs():
    x = torch.randn((1, 1, 4), generator=torch.Generator().manual_seed(0))
    attn_in_proj_weight = torch.randn((12, 4), generator=torch.Generator().manual_seed(0))
    attn_in_proj_bias = torch.randn((12,), generator=torch.Generator().manual_seed(0))
    attn_out_proj_weight = torch.randn((4, 4), generator=torch.Generator().manual_seed(0))
    attn_out_proj_bias = torch.randn((4,), generator=torch.Generator().manual_seed(0))
    t = {'x': x, 'attn_in_proj_weight': attn_in_proj_weight, 'attn_in_proj_bias': attn_in_proj_bias, 'attn_out_proj_weight': attn_out_proj_weight, 'attn_out_proj_bias': attn_out_proj_bias}
    t['attn'] = torch.nn.MultiheadAttention(embed_dim=4, num_heads=2, dropout=0.0, batch_first=True, device='meta', dtype=t['attn_in_proj_weight'].dtype).train(False)
    t['attn'].in_proj_weight = t['attn_in_proj_weight'] = torch.nn.Parameter(t['attn_in_proj_weight'], requires_grad=t['attn_in_proj_weight'].requires_grad)
    t['attn'].in_proj_bias = t['attn_in_proj_bias'] = torch.nn.Parameter(t['attn_in_proj_bias'], requires_grad=t['attn_in_proj_bias'].requires_grad)
    t['attn'].out_proj.weight = t['attn_out_proj_weight'] = torch.nn.Parameter(t['attn_out_proj_weight'], requires_grad=t['attn_out_proj_weight'].requires_grad)
    t['attn'].out_proj.bias = t['attn_out_proj_bias'] = torch.nn.Parameter(t['attn_out_proj_bias'], requires_grad=t['attn_out_proj_bias'].requires_grad)
    return t

def call(f):
    t = inputs()
    try:
        return t, f(**t)
    except Exception as e:
        return t, e

compiled = torch.compile(fn, backend='eager')
_, e = call(fn)
_, c = call(compiled)
root = lambda e: root(e.__cause__ or e.__context__) if isinstance(e, Exception) and (e.__cause__ or e.__context__) else e  # the innermost exception, through Dynamo's wrappers
print("eager:   ", repr(e), "\n  innermost:", repr(root(e)))
print("compiled:", repr(c), "\n  innermost:", repr(root(c)))
x = torch._dynamo.exc  # a compiler failure, or Dynamo refusing the program, is no user error
failed = isinstance(c, (x.BackendCompilerFailed, x.InternalTorchDynamoError)) or isinstance(c, x.Unsupported) and c.__cause__ is None
raise SystemExit((e is None) != (c is None) or e is not None and (failed or type(root(e)) is not type(root(c))))
