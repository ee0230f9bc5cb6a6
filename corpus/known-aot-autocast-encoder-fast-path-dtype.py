"""sdpa-fuzz, backend 'aot_eager': compiled output shape/dtype/requires_grad differs from eager
(metadata:module_call:bfloat16). Exits 1 while it diverges, 0 once fixed."""
import torch

def fn(x, attn, attn_self_attn_in_proj_weight, attn_self_attn_in_proj_bias, attn_self_attn_out_proj_weight, attn_self_attn_out_proj_bias, attn_linear1_weight, attn_linear1_bias, attn_linear2_weight, attn_linear2_bias, attn_norm1_weight, attn_norm1_bias, attn_norm2_weight, attn_norm2_bias):
    out = attn(x)
    return out

def inputs():
    x = torch.randn((1, 1, 4), generator=torch.Generator().manual_seed(0))
    attn_self_attn_in_proj_weight = torch.randn((12, 4), generator=torch.Generator().manual_seed(0))
    attn_self_attn_in_proj_bias = torch.randn((12,), generator=torch.Generator().manual_seed(0))
    attn_self_attn_out_proj_weight = torch.randn((4, 4), generator=torch.Generator().manual_seed(0))
    attn_self_attn_out_proj_bias = torch.randn((4,), generator=torch.Generator().manual_seed(0))
    attn_linear1_weight = torch.randn((1, 4), generator=torch.Generator().manual_seed(0))
    attn_linear1_bias = torch.randn((1,), generator=torch.Generator().manual_seed(0))
    attn_linear2_weight = torch.randn((4, 1), generator=torch.Generator().manual_seed(0))
    attn_linear2_bias = torch.randn((4,), generator=torch.Generator().manual_seed(0))
    attn_norm1_weight = torch.randn((4,), generator=torch.Generator().manual_seed(0))
    attn_norm1_bias = torch.randn((4,), generator=torch.Generator().manual_seed(0))
    attn_norm2_weight = torch.randn((4,), generator=torch.Generator().manual_seed(0))
    attn_norm2_bias = torch.randn((4,), generator=torch.Generator().manual_seed(0))
    t = {'x': x, 'attn_self_attn_in_proj_weight': attn_self_attn_in_proj_weight, 'attn_self_attn_in_proj_bias': attn_self_attn_in_proj_bias, 'attn_self_attn_out_proj_weight': attn_self_attn_out_proj_weight, 'attn_self_attn_out_proj_bias': attn_self_attn_out_proj_bias, 'attn_linear1_weight': attn_linear1_weight, 'attn_linear1_bias': attn_linear1_bias, 'attn_linear2_weight': attn_linear2_weight, 'attn_linear2_bias': attn_linear2_bias, 'attn_norm1_weight': attn_norm1_weight, 'attn_norm1_bias': attn_norm1_bias, 'attn_norm2_weight': attn_norm2_weight, 'attn_norm2_bias': attn_norm2_bias}
    t['attn'] = torch.nn.TransformerEncoderLayer(d_model=4, nhead=2, dim_feedforward=1, dropout=0.0, batch_first=True, device='meta', dtype=t['attn_self_attn_in_proj_weight'].dtype).train(False)
    for path, _ in list(t['attn'].named_parameters()):  # each parameter input becomes its own
        n, (owner, _, leaf) = 'attn_' + path.replace('.', '_'), path.rpartition('.')
        t[n] = torch.nn.Parameter(t[n], requires_grad=t[n].requires_grad)
        setattr(t['attn'].get_submodule(owner), leaf, t[n])
    return t

def call(f):
    t = inputs()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        return t, f(**t)

compiled = torch.compile(fn, backend='aot_eager')
_, e = call(fn)
_, c = call(compiled)
meta = lambda x: (tuple(x.shape), x.dtype, x.device, x.requires_grad)
print("shape, dtype, device, requires_grad: eager", meta(e))
print("                                  compiled", meta(c))
raise SystemExit(meta(e) != meta(c))
