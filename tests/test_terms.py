"""The magnitudes a gradient sums (`fuzz.terms`): exact where the sum is known, and never
below the gradient itself."""

from __future__ import annotations

import pytest
import torch

from fuzz.terms import GradientTerms


def _grads(out: torch.Tensor, wrt: list[torch.Tensor], upstream: torch.Tensor):
    with GradientTerms() as mode:
        grads = torch.autograd.grad(out, wrt, upstream)
    return grads, [mode.terms(g) for g in grads]


def test_a_projection_s_weight_sums_every_token_s_product() -> None:
    """`dW = G^T X` over (batch x length) tokens: its terms are `|G|^T |X|`, and the bias's
    `sum |G|`; a layer norm's weight sums `|G| |x_hat|`. Without the rules each would be
    the gradient's own magnitude, which cancellation makes smaller."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 7, 5, generator=gen, dtype=torch.float64)
    w = torch.randn(4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, generator=gen, dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, 7, 4, generator=gen, dtype=torch.float64)
    (dw, db), (tw, tb) = _grads(torch.nn.functional.linear(x, w, b), [w, b], g)
    tokens_g, tokens_x = g.reshape(-1, 4).abs(), x.reshape(-1, 5).abs()
    torch.testing.assert_close(tw, tokens_g.T @ tokens_x)
    torch.testing.assert_close(tb, tokens_g.sum(0))
    assert (tw.max() > 2 * dw.abs().max()) and (tb.max() > 2 * db.abs().max())

    norm = torch.nn.LayerNorm(5, dtype=torch.float64)
    (dn,), (tn,) = _grads(norm(x), [norm.weight], g[..., :1].expand(3, 7, 5))
    x_hat = torch.nn.functional.layer_norm(x, (5,)).abs()
    torch.testing.assert_close(tn, (g[..., :1].abs() * x_hat).sum((0, 1)))
    assert tn.max() > dn.abs().max()


@pytest.mark.parametrize("layer", ["mha", "encoder", "decoder"])
def test_every_gradient_s_terms_bound_its_magnitude(layer: str) -> None:
    """Whatever ops a module's backward runs, a bound is at least what it bounds."""
    torch.manual_seed(0)
    x = torch.randn(6, 2, 8, dtype=torch.float64, requires_grad=True)
    if layer == "mha":
        module = torch.nn.MultiheadAttention(8, 2, kdim=3, vdim=5, dtype=torch.float64)
        out = module(x, torch.randn(4, 2, 3, dtype=torch.float64),
                     torch.randn(4, 2, 5, dtype=torch.float64))[0]
    elif layer == "encoder":
        module = torch.nn.TransformerEncoderLayer(8, 2, 16, 0.0, "gelu", norm_first=True,
                                                  dtype=torch.float64)
        out = module(x)
    else:
        module = torch.nn.TransformerDecoderLayer(8, 2, 16, 0.0, dtype=torch.float64)
        out = module(x, torch.randn(3, 2, 8, dtype=torch.float64))
    wrt = [x] + list(module.parameters())
    grads, terms = _grads(out, wrt, torch.randn_like(out))
    for g, t in zip(grads, terms):
        assert t.shape == g.shape and bool((t >= g.abs() * (1 - 1e-12)).all())


def test_a_tensor_an_unknown_in_place_op_rewrote_starts_afresh() -> None:
    """Its bound from before the op would describe values it no longer holds."""
    gen = torch.Generator().manual_seed(1)
    a, b = (torch.randn(4, 9, generator=gen, dtype=torch.float64),
            torch.randn(9, 5, generator=gen, dtype=torch.float64))
    with GradientTerms() as mode:
        c = a @ b
        assert mode.terms(c).max() > c.abs().max()
        c.fill_(0.5)
        assert bool((mode.terms(c) == 0.5).all())


def test_a_row_that_cancels_exactly_keeps_the_terms_it_summed() -> None:
    """Over equal keys a softmax's backward sums to zero in every row, so the query
    projection's gradient is 0 in float64 while float32 code that sums in another order
    leaves its rounding (a clean Inductor run's false alarms on `grad-w_q`); a layer
    norm's input gradient cancels alike under a constant upstream gradient. The bound
    keeps the terms; started afresh from the output it would be about 0."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(1, 1, 3, generator=gen, dtype=torch.float64).expand(1, 4, 3)
    w_q, w_k, w_v = (torch.randn(6, 3, generator=gen, dtype=torch.float64,
                                 requires_grad=True) for _ in range(3))
    heads = lambda w: torch.nn.functional.linear(x, w).view(1, 4, 2, 3).transpose(1, 2)
    with torch.nn.attention.sdpa_kernel([torch.nn.attention.SDPBackend.MATH]):
        out = torch.nn.functional.scaled_dot_product_attention(heads(w_q), heads(w_k),
                                                               heads(w_v))
        (dq,), (tq,) = _grads(out, [w_q], torch.randn(out.shape, generator=gen,
                                                       dtype=torch.float64))
    assert dq.abs().max() < 1e-12 and tq.min() > 1e-2

    y = torch.randn(5, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    (dy,), (ty,) = _grads(torch.nn.functional.layer_norm(y, (7,)), [y],
                          torch.full((5, 7), 0.5, dtype=torch.float64))
    assert dy.abs().max() < 1e-12 and ty.min() > 1e-2
