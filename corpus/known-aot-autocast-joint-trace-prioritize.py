"""sdpa-fuzz, backend 'aot_eager': compiled and eager raise differently
(outcome:call:RuntimeError-vs-internal-RuntimeError). Exits 1 while it diverges, 0 once fixed."""
import torch

def fn(x, attn, attn_self_attn_in_proj_weight, attn_self_attn_in_proj_bias, attn_self_attn_out_proj_weight, attn_self_attn_out_proj_bias, attn_multihead_attn_in_proj_weight, attn_multihead_attn_in_proj_bias, attn_multihead_attn_out_proj_weight, attn_multihead_attn_out_proj_bias, attn_linear1_weight, attn_linear1_bias, attn_linear2_weight, attn_linear2_bias, attn_norm1_weight, attn_norm1_bias, attn_norm2_weight, attn_norm2_bias, attn_norm3_weight, attn_norm3_bias, memory):
    out = attn(x, memory)
    return out

def inputs():
    x = torch.randn((1, 1, 2), generator=torch.Generator().manual_seed(0))
    attn_self_attn_in_proj_weight = torch.randn((6, 2), generator=torch.Generator().manual_seed(0)).to(torch.float16).requires_grad_()
    attn_self_attn_in_proj_bias = torch.randn((6,), generator=torch.Generator().manual_seed(0)).to(torch.float16).requires_grad_()
    attn_self_attn_out_proj_weight = torch.randn((2, 2), generator=torch.Generator().manual_seed(0)).to(torch.float16).requires_grad_()
    attn_self_attn_out_proj_bias = torch.randn((2,), generator=torch.Generator().manual_seed(0)).to(torch.float16).requires_grad_()
    attn_multihead_attn_in_proj_weight = torch.randn((6, 2), generator=torch.Generator().manual_seed(0)).to(torch.float16).requires_grad_()
    attn_multihead_attn_in_proj_bias = torch.randn((6,), generator=torch.Generator().manual_seed(0)).to(torch.float16).requires_grad_()
    attn_multihead_attn_out_proj_weight = torch.randn((2, 2), generator=torch.Generator().manual_seed(0)).to(torch.float16).requires_grad_()
    attn_multihead_attn_out_proj_bias = torch.randn((2,), generator=torch.Generator().manual_seed(0)).to(torch.float16).requires_grad_()
    attn_linear1_weight = torch.randn((1, 2), generator=torch.Generator().manual_seed(0)).to(torch.float16).requires_grad_()
    attn_linear1_bias = torch.randn((1,), generator=torch.Generator().manual_seed(0)).to(torch.float16).requires_grad_()
    attn_linear2_weight = torch.randn((2, 1), generator=torch.Generator().manual_seed(0)).to(torch.float16).requires_grad_()
    attn_linear2_bias = torch.randn((2,), generator=torch.Generator().manual_seed(0)).to(torch.float16).requires_grad_()
    attn_norm1_weight = torch.randn((2,), generator=torch.Generator().manual_seed(0)).to(torch.float16).requires_grad_()
    attn_norm1_bias = torch.randn((2,), generator=torch.Generator().manual_seed(0)).to(torch.float16).requires_grad_()
    attn_norm2_weight = torch.randn((2,), generator=torch.Generator().manual_seed(0)).to(torch.float16).requires_grad_()
    attn_norm2_bias = torch.randn((2,), generator=torch.Generator().manual_seed(0)).to(torch.float16).requires_grad_()
    attn_norm3_weight = torch.randn((2,), generator=torch.Generator().manual_seed(0)).to(torch.float16).requires_grad_()
    attn_norm3_bias = torch.randn((2,), generator=torch.Generator().manual_seed(0)).to(torch.float16).requires_grad_()
    memory = torch.randn((1, 1, 2), generator=torch.Generator().manual_seed(0))
    t = {'x': x, 'attn_self_attn_in_proj_weight': attn_self_attn_in_proj_weight, 'attn_self_attn_in_proj_bias': attn_self_attn_in_proj_bias, 'attn_self_attn_out_proj_weight': attn_self_attn_out_proj_weight, 'attn_self_attn_out_proj_bias': attn_self_attn_out_proj_bias, 'attn_multihead_attn_in_proj_weight': attn_multihead_attn_in_proj_weight, 'attn_multihead_attn_in_proj_bias': attn_multihead_attn_in_proj_bias, 'attn_multihead_attn_out_proj_weight': attn_multihead_attn_out_proj_weight, 'attn_multihead_attn_out_proj_bias': attn_multihead_attn_out_proj_bias, 'attn_linear1_weight': attn_linear1_weight, 'attn_linear1_bias': attn_linear1_bias, 'attn_linear2_weight': attn_linear2_weight, 'attn_linear2_bias': attn_linear2_bias, 'attn_norm1_weight': attn_norm1_weight, 'attn_norm1_bias': attn_norm1_bias, 'attn_norm2_weight': attn_norm2_weight, 'attn_norm2_bias': attn_norm2_bias, 'attn_norm3_weight': attn_norm3_weight, 'attn_norm3_bias': attn_norm3_bias, 'memory': memory}
    t['attn'] = torch.nn.TransformerDecoderLayer(d_model=2, nhead=1, dim_feedforward=1, dropout=0.0, device='meta', dtype=t['attn_self_attn_in_proj_weight'].dtype).train(False)
    for path, _ in list(t['attn'].named_parameters()):  # each parameter input becomes its own
        n, (owner, _, leaf) = 'attn_' + path.replace('.', '_'), path.rpartition('.')
        t[n] = torch.nn.Parameter(t[n], requires_grad=t[n].requires_grad)
        setattr(t['attn'].get_submodule(owner), leaf, t[n])
    return t

def call(f):
    t = inputs()
    with torch.autocast('cpu', dtype=torch.bfloat16):
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
