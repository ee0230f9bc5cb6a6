"""sdpa-fuzz, backend 'inductor': compiled output strides differ from eager
(stride:module_call:bfloat16). Exits 1 while it diverges, 0 once fixed."""
import torch

def fn(x, attn, attn_self_attn_in_proj_weight, attn_self_attn_in_proj_bias, attn_self_attn_out_proj_weight, attn_self_attn_out_proj_bias, attn_linear1_weight, attn_linear1_bias, attn_linear2_weight, attn_linear2_bias, attn_norm1_weight, attn_norm1_bias, attn_norm2_weight, attn_norm2_bias):
    out = attn(x)
    return out

def inputs():
    x = torch.randn((1, 2, 2), generator=torch.Generator().manual_seed(0)).to(torch.bfloat16).expand((2, 2, 2))
    attn_self_attn_in_proj_weight = torch.randn((6, 2), generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    attn_self_attn_in_proj_bias = torch.randn((6,), generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    attn_self_attn_out_proj_weight = torch.randn((2, 2), generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    attn_self_attn_out_proj_bias = torch.randn((2,), generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    attn_linear1_weight = torch.randn((1, 2), generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    attn_linear1_bias = torch.randn((1,), generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    attn_linear2_weight = torch.randn((2, 1), generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    attn_linear2_bias = torch.randn((2,), generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    attn_norm1_weight = torch.randn((2,), generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    attn_norm1_bias = torch.randn((2,), generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    attn_norm2_weight = torch.randn((2,), generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    attn_norm2_bias = torch.randn((2,), generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    t = {'x': x, 'attn_self_attn_in_proj_weight': attn_self_attn_in_proj_weight, 'attn_self_attn_in_proj_bias': attn_self_attn_in_proj_bias, 'attn_self_attn_out_proj_weight': attn_self_attn_out_proj_weight, 'attn_self_attn_out_proj_bias': attn_self_attn_out_proj_bias, 'attn_linear1_weight': attn_linear1_weight, 'attn_linear1_bias': attn_linear1_bias, 'attn_linear2_weight': attn_linear2_weight, 'attn_linear2_bias': attn_linear2_bias, 'attn_norm1_weight': attn_norm1_weight, 'attn_norm1_bias': attn_norm1_bias, 'attn_norm2_weight': attn_norm2_weight, 'attn_norm2_bias': attn_norm2_bias}
    t['attn'] = torch.nn.TransformerEncoderLayer(d_model=2, nhead=1, dim_feedforward=1, dropout=0.0, norm_first=True, batch_first=True, device='meta', dtype=t['attn_self_attn_in_proj_weight'].dtype).train(False)
    for path, _ in list(t['attn'].named_parameters()):  # each parameter input becomes its own
        n, (owner, _, leaf) = 'attn_' + path.replace('.', '_'), path.rpartition('.')
        t[n] = torch.nn.Parameter(t[n], requires_grad=t[n].requires_grad)
        setattr(t['attn'].get_submodule(owner), leaf, t[n])
    return t

def call(f):
    t = inputs()
    return t, f(**t)

compiled = torch.compile(fn, backend='inductor')
_, e = call(fn)
_, c = call(compiled)
strides = lambda x: [s for n, s in zip(x.shape, x.stride()) if n > 1]
print("strides of the dims of size > 1: eager", strides(e), "compiled", strides(c))
raise SystemExit(strides(e) != strides(c))
