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
    """`dW = G^T X` over (batch x length) tokens: the root of its terms' squares is
    `sqrt((G^2)^T (X^2))`, the bias's `sqrt(sum G^2)`, a layer norm's weight's
    `sqrt(sum G^2 x_hat^2)`, each at least the gradient's magnitude. Without the rules
    each would be the gradient's own magnitude, which cancellation makes smaller."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 7, 5, generator=gen, dtype=torch.float64)
    w = torch.randn(4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, generator=gen, dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, 7, 4, generator=gen, dtype=torch.float64)
    (dw, db), (tw, tb) = _grads(torch.nn.functional.linear(x, w, b), [w, b], g)
    tokens_g, tokens_x = g.reshape(-1, 4), x.reshape(-1, 5)
    torch.testing.assert_close(tw, torch.maximum(
        (tokens_g.square().T @ tokens_x.square()).sqrt(), dw.abs()))
    torch.testing.assert_close(tb, torch.maximum(tokens_g.square().sum(0).sqrt(), db.abs()))
    assert bool((tw > dw.abs() * (1 + 1e-9)).any()) and bool((tb > db.abs() * (1 + 1e-9)).any())

    norm = torch.nn.LayerNorm(5, dtype=torch.float64)
    (dn,), (tn,) = _grads(norm(x), [norm.weight], g[..., :1].expand(3, 7, 5))
    x_hat = torch.nn.functional.layer_norm(x, (5,))
    torch.testing.assert_close(tn, torch.maximum(
        (g[..., :1].square() * x_hat.square()).sum((0, 1)).sqrt(), dn.abs()))
    assert bool((tn > dn.abs() * (1 + 1e-9)).any())


def test_the_terms_of_a_deep_chain_grow_as_its_values_do() -> None:
    """Through a chain of projections the sum of the terms' magnitudes grows by about the
    square root of each fan-in over the values (independent signs cancel), so after six
    layers of width 16 it is hundreds of times the gradient, and a floor on it holds
    nothing; the root of their squares stays within a few times the gradient."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(8, 16, generator=gen, dtype=torch.float64)
    ws = [(torch.randn(16, 16, generator=gen, dtype=torch.float64) / 4).requires_grad_()
          for _ in range(6)]
    out = x
    for w in ws:
        out = torch.nn.functional.linear(out, w)
    grads, terms = _grads(out, ws[:1], torch.randn(8, 16, generator=gen, dtype=torch.float64))
    assert terms[0].max() < 5 * grads[0].abs().max()


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
        assert bool((mode.terms(c) > c.abs()).any())
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


@pytest.mark.parametrize("variant", ["plain", "mask", "causal", "gqa", "negative-scale"])
def test_cpu_flash_s_backward_sums_the_terms_the_math_kernel_sums(variant: str) -> None:
    """One key per row makes the query's and key's gradients exactly 0, while CPU flash's
    16-bit backward leaves a residue of `dP - rowsum(dO * O)` that depends on where its
    operands were rounded (a clean Inductor run's `grad-x` of a one-token model layer,
    3.09 off compiled, 0.17 eager). Either kernel's backward is bounded by the same terms;
    started afresh from its output, CPU flash's would be 0."""
    gen = torch.Generator().manual_seed(3)
    heads, kv_heads = (4, 2) if variant == "gqa" else (2, 2)
    q = torch.randn(2, heads, 5, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    k, v = (torch.randn(2, kv_heads, 6, 8, generator=gen, dtype=torch.float64,
                        requires_grad=True) for _ in range(2))
    kwargs = {"attn_mask": torch.rand(5, 6, generator=gen) < 0.7} if variant == "mask" else \
        {"is_causal": True} if variant == "causal" else \
        {"enable_gqa": True} if variant == "gqa" else \
        {"scale": -0.7} if variant == "negative-scale" else {}
    upstream = torch.randn(2, heads, 5, 8, generator=gen, dtype=torch.float64)
    found = {}
    for backend in (torch.nn.attention.SDPBackend.FLASH_ATTENTION,
                    torch.nn.attention.SDPBackend.MATH):
        with torch.nn.attention.sdpa_kernel([backend]):
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v, **kwargs)
        found[backend] = _grads(out, [q, k, v], upstream)[1]
    for flash, math in zip(*found.values()):
        torch.testing.assert_close(flash, math)

    out = torch.nn.functional.scaled_dot_product_attention(q, k[:, :, :1], v[:, :, :1],
                                                           enable_gqa=True)
    (dq,), (tq,) = _grads(out, [q], upstream)
    assert dq.abs().max() < 1e-12 and tq.min() > 1e-3
