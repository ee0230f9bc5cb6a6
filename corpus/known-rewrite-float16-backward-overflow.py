"""sdpa-fuzz, backend 'inductor': compiled NaN/Inf positions differ from eager
(nan-inf:grad-k:float16). Exits 1 while it diverges, 0 once fixed."""
import torch
import torch.nn.functional as F

def fn(q, k, v):
    out_q = q.permute(0, 2, 1, 3)
    out_k = k.permute(0, 2, 1, 3)
    out_v = v.permute(0, 2, 1, 3)
    out_w = out_q @ out_k.mT
    out_w = out_w / 0.001
    out_w = out_w.softmax(-1)
    out_w = F.dropout(out_w, p=0.5, training=False)
    out = out_w @ out_v
    return out

def inputs():
    q = ((torch.randn((3, 80, 2, 8), generator=torch.Generator().manual_seed(237)) * 30.0).to(torch.float16)).requires_grad_()
    k = ((torch.randn((3, 17, 2, 8), generator=torch.Generator().manual_seed(14644)) * 0.0001).to(torch.float16)).requires_grad_()
    v = torch.randn((3, 17, 2, 8), generator=torch.Generator().manual_seed(464115)).to(torch.float16).requires_grad_()
    return {'q': q, 'k': k, 'v': v}

def call(f):
    t = inputs()
    return t, f(**t)

def grads(t, result, like=None):  # backward from seeded upstream gradients, as sdpa-fuzz
    leaves = torch.utils._pytree.tree_leaves(result)
    outs = [(j, x) for j, x in enumerate(leaves) if isinstance(x, torch.Tensor) and x.grad_fn]
    ups = [torch.randn(x.shape, generator=torch.Generator().manual_seed(7919 * (j + 1)))
           .to((like or leaves)[j].dtype).to(x) for j, x in outs]
    wanted = [n for n, x in t.items() if isinstance(x, torch.Tensor) and x.requires_grad]
    got = torch.autograd.grad([x for _, x in outs], [t[n] for n in wanted], ups,
                              allow_unused=True)
    return dict(zip(wanted, got))

compiled = torch.compile(fn, backend='inductor', fullgraph=True, dynamic=True)
te, out_e = call(fn)
tc, out_c = call(compiled)
e, c = grads(te, out_e)['k'], grads(tc, out_c)['k']
kinds = lambda x: (x.isnan(), x.isposinf(), x.isneginf())
print("NaN, +inf, -inf: eager", [int(k.sum()) for k in kinds(e)], "compiled", [int(k.sum()) for k in kinds(c)])
raise SystemExit(any(not torch.equal(a, b) for a, b in zip(kinds(e), kinds(c))))
