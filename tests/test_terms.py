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
