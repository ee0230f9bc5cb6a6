"""The terms a gradient sums, tracked through the float64 run's backward.

A parameter's gradient sums over every token: `dW = G^T X` for a projection, `sum(G * x_hat)`
for a layer norm's weight. Its terms cancel, so its own magnitude says nothing about the
rounding in it, and two correct implementations that sum in different orders, or that
round G at different points, differ by about their working precision times the size of
the terms. Attention's own gradients have analytic bounds (`tolerance.gradient_bounds`);
a module's or a model layer's parameters pass through layer norms, feed-forward layers and
projections, which no closed form follows.

The size kept is the root of the sum of the terms' squares, `sqrt((G^2)^T (X^2))` for a
projection's weight: each term's rounding is its own, and independent roundings add in
quadrature. The sum of their magnitudes, `|G|^T |X|`, is a worst case that compounds
through every layer: over a decoder layer's three norms, projections and attention it
reached 39,000 for a self-attention weight whose gradient was 0.024, so a float32
gradient was allowed 0.11 and its check said nothing.

`GradientTerms` is a dispatch mode over that backward. Beside every tensor an op makes it
keeps that size, elementwise at least the tensor's magnitude: an op that moves, scales
or sums its operands (views, copies, sums, products, additions, a ReLU's or GELU's
backward) gives the sum of its terms' squares; a layer norm's backward gets its weight's
and bias's sums over the tokens; the backward of a softmax, and a layer norm's input
gradient, get the terms they sum within a row, which cancel exactly where the row is
uniform (equal keys, a constant gradient); so does the CPU flash kernel's backward,
whose score gradient `P * (dP - rowsum(dP * P))` is exactly 0 where a row attends to one
key but, in 16 bits, a residue that depends on where the operands were rounded; any other
op starts afresh from its output's magnitude (it sums nothing, and its rounding is part
of eager's error).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

aten = torch.ops.aten

# Each output element is one of its first tensor argument's: the squares move alike.
MOVES = {
    aten.view.default, aten._unsafe_view.default, aten.reshape.default, aten.t.default,
    aten.transpose.int, aten.permute.default, aten.expand.default, aten.squeeze.dim,
    aten.squeeze.dims, aten.squeeze.default, aten.unsqueeze.default, aten.clone.default,
    aten.detach.default, aten.alias.default, aten.select.int, aten.slice.Tensor,
    aten.select_backward.default, aten.slice_backward.default, aten._to_copy.default,
    aten.split.Tensor, aten.split_with_sizes.default, aten.unbind.int, aten.chunk.default,
    aten.narrow.default, aten.repeat.default, aten.index_select.default,
    aten.new_zeros.default, aten.flip.default,
}
# Each output element is one of its first tensor argument's times a factor the other
# arguments give: the squares take the factor's square.
SCALES = {
    aten.neg.default, aten.mul.Scalar, aten.div.Scalar, aten.div.Tensor,
    aten.threshold_backward.default, aten.gelu_backward.default,
}
SUMS = {aten.sum.dim_IntList, aten.sum.default}
# Sums of products of every tensor argument, or their concatenation: applied to the
# squares (with `alpha` and `beta` squared), they give the sum of the terms' squares.
MULTILINEAR = {
    aten.mm.default, aten.bmm.default, aten.matmul.default, aten.addmm.default,
    aten.baddbmm.default, aten.mv.default, aten.dot.default, aten.mul.Tensor,
    aten.add.Tensor, aten.cat.default, aten.stack.default, aten.slice_scatter.default,
    aten.select_scatter.default,
}
SIGNED = {aten.sub.Tensor: aten.add.Tensor}  # the terms of a - b are those of a + b
VIEWS = {aten.view.default, aten._unsafe_view.default}  # the squares may need a copy


def _squared(kwargs: dict) -> dict:
    """Keyword arguments with `alpha` and `beta` (the factors of add, addmm, baddbmm)
    squared, as the squares of the terms they scale are."""
    return {k: v * v if k in ("alpha", "beta") else v for k, v in kwargs.items()}


class GradientTerms(TorchDispatchMode):
    """Dispatch mode: `terms(t)` is, for a tensor an op made under it, the root of the sum
    of the squares of the terms summed into each element (at least |t|)."""

    def __init__(self) -> None:
        super().__init__()
        # id -> (tensor, sum of squares): holding the tensor keeps its id, and its Python
        # object, alive for as long as the squares are looked up by it.
        self._squares: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def terms(self, t: torch.Tensor) -> torch.Tensor:
        return self._square(t).sqrt()

    def _square(self, t: torch.Tensor) -> torch.Tensor:
        held = self._squares.get(id(t))
        return held[1] if held is not None and held[0] is t else t.detach().square()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        try:
            squares = self._squares_of(func, args, kwargs, out)
        except RuntimeError:  # a view the contiguous squares cannot take: start afresh
            squares = None
        outs = out if isinstance(out, (tuple, list)) else (out,)
        found = squares if isinstance(squares, (tuple, list)) else (squares,) * len(outs)
        for t, s in zip(outs, found):
            if isinstance(t, torch.Tensor) and isinstance(s, torch.Tensor) and \
                    s.shape == t.shape:
                self._squares[id(t)] = (t, torch.maximum(s.abs(), t.detach().square()))
            elif isinstance(t, torch.Tensor):  # an in-place op's tensor starts afresh too
                self._squares.pop(id(t), None)
        return out

    def _squares_of(self, func, args, kwargs, out) -> Any:
        if func in MOVES or func in SUMS or func in SCALES:
            first = next(i for i, a in enumerate(args) if isinstance(a, torch.Tensor))
            args = list(args)
            square = self._square(args[first])
            if func in SCALES:  # the factor squared: the op on the root, squared
                args[first] = square.sqrt()
                return tree_map(lambda t: t.square() if isinstance(t, torch.Tensor) else t,
                                func(*args, **kwargs))
            args[first] = square
            return (aten.reshape.default if func in VIEWS else func)(*args, **kwargs)
        if func in MULTILINEAR or func in SIGNED:
            args = tree_map(lambda a: self._square(a) if isinstance(a, torch.Tensor) else a,
                            args)
            return SIGNED.get(func, func)(*args, **_squared(kwargs))
        if func is aten._softmax_backward_data.default:
            grad, y, dim = args[:3]
            g, y2 = self._square(grad), y.square()
            return y2 * (g + (g * y2).sum(dim, keepdim=True))  # y * (g - sum(g * y))
        if func is aten._log_softmax_backward_data.default:
            grad, y, dim = args[:3]
            g = self._square(grad)
            return g + (2 * y).exp() * g.sum(dim, keepdim=True)  # g - exp(y) * sum(g)
        if func is aten.native_layer_norm_backward.default:
            return self._layer_norm(args, out)
        if func is aten._scaled_dot_product_flash_attention_for_cpu_backward.default:
            return self._attention(args, kwargs)
        return None

    def _attention(self, args, kwargs) -> tuple:
        """CPU flash's backward as the math kernel sums it, with the weights `P` recomputed
        from the operands: `dV = P^T G`, `dS = P * (dP - rowsum(dP * P))` for `dP = G V^T`,
        `dQ = scale dS K`, `dK = scale dS^T Q`, each intermediate at least its own square
        as the math kernel's are; GQA's shared key heads sum over their group, and
        dropout's kept weights grow by `1 / (1 - p)` at most."""
        grad, q, k, v, _, _, dropout_p, is_causal = args[:8]
        mask, scale = kwargs.get("attn_mask"), kwargs.get("scale")
        group = q.size(-3) // max(1, k.size(-3))
        k, v = (t.repeat_interleave(group, -3) for t in (k, v))
        factor = q.size(-1) ** -0.5 if scale is None else scale
        scores = factor * q @ k.transpose(-1, -2)
        if mask is not None:
            scores = scores + mask
        if is_causal:
            kept = torch.ones(scores.shape[-2:], dtype=torch.bool, device=q.device).tril()
            scores = scores.masked_fill(~kept, float("-inf"))
        p = torch.softmax(scores, -1).nan_to_num(0.0) / (1 - dropout_p)
        g, p2 = self._square(grad), p.square()
        d_p = grad @ v.transpose(-1, -2)
        d_p2 = torch.maximum(g @ v.square().transpose(-1, -2), d_p.square())
        d_s = p * (d_p - (d_p * p).sum(-1, keepdim=True))
        d_s2 = torch.maximum(p2 * (d_p2 + (d_p2 * p2).sum(-1, keepdim=True)), d_s.square())
        s2 = factor * factor
        dk = torch.maximum(s2 * d_s2.transpose(-1, -2) @ q.square(),
                           (factor * d_s.transpose(-1, -2) @ q).square())
        dv = torch.maximum(p2.transpose(-1, -2) @ g, (p.transpose(-1, -2) @ grad).square())
        if group > 1:  # each shared head's gradient, then their sum
            dk, dv = (t.unflatten(-3, (-1, group)).sum(-3) for t in (dk, dv))
        return s2 * d_s2 @ k.square(), dk, dv

    def _layer_norm(self, args, out) -> tuple:
        """The input's gradient sums `G * w` and `G * w * x_hat` over the row, less their
        means; the weight's sums `G * x_hat` over the tokens, the bias's `G`."""
        grad, x, shape, mean, rstd, weight = args[:6]
        row = tuple(range(x.dim() - len(shape), x.dim()))
        tokens = tuple(range(x.dim() - len(shape)))
        n = x[(0,) * len(tokens)].numel() if tokens else x.numel()
        g = self._square(grad)
        x_hat2 = ((x - mean) * rstd).square()
        gw = g if weight is None else g * weight.square()
        dx = rstd.square() * (gw + gw.mean(row, keepdim=True) / n
                              + x_hat2 * (gw * x_hat2).mean(row, keepdim=True) / n)
        return (None if out[0] is None else dx,
                None if out[1] is None else (g * x_hat2).sum(tokens),
                None if out[2] is None else g.sum(tokens))
