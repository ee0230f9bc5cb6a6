"""Which kernel eager ran, and the float64 reference that no kernel context can refuse."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from torch.nn.attention import SDPBackend, sdpa_kernel

from fuzz.kernels import NO_KERNEL, KernelLog, ReferenceSDPA, RoundingJitter
from fuzz.tolerance import FUDGE, FUSED_GRAD_FUDGE, fudge
from strategies.cases import attention_cases, plain_cases
from tests.faults import eager_kernels


def test_the_log_names_the_kernel_each_context_leaves_eager() -> None:
    """CPU has flash (4-D inputs) and math; a context with neither leaves no kernel, and
    eager raises."""
    q = torch.randn(1, 2, 5, 8)
    with KernelLog() as log:
        F.scaled_dot_product_attention(q, q, q)
        with sdpa_kernel([SDPBackend.MATH]):
            F.scaled_dot_product_attention(q, q, q)
        with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION]), pytest.raises(RuntimeError):
            F.scaled_dot_product_attention(q, q, q)
        F.scaled_dot_product_attention(q[0], q[0], q[0])  # 3-D: CPU flash takes only 4-D
    assert log.kernels == ["flash", "math", NO_KERNEL, "math"]


@settings(max_examples=60, database=None)
@given(batch=st.integers(1, 2), heads=st.sampled_from([(2, 2), (4, 2), (3, 1)]),
       L=st.integers(1, 9), S=st.integers(1, 9), Ev=st.integers(1, 9),
       mask=st.sampled_from(["none", "bool", "float", "causal"]),
       scale=st.floats(-2, 2),
       backends=st.sampled_from([[SDPBackend.EFFICIENT_ATTENTION], [SDPBackend.FLASH_ATTENTION],
                                 [SDPBackend.CUDNN_ATTENTION], [SDPBackend.MATH]]))
def test_the_reference_computes_sdpa_whatever_the_context(batch, heads, L, S, Ev, mask,
                                                          scale, backends) -> None:
    """Under ReferenceSDPA(math=True), SDPA gives exactly what float64 SDPA's math kernel
    gives (fully masked rows, GQA and gradients included), also inside a context whose
    kernels cannot run the call at all: the reference must exist wherever eager ran. Not
    CPU flash's: it gives NaN for is_causal with a scale of 0 or below, where math does
    not (docs/findings.md, eager-only); a random run of this test found the negative
    scales, which the derandomized `ci` profile never drew."""
    gen = torch.Generator().manual_seed(L * 100 + S)
    shape = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64).requires_grad_()
    q, k, v = shape(batch, heads[0], L, 8), shape(batch, heads[1], S, 8), shape(batch, heads[1], S, Ev)
    m = {"none": None, "causal": None,
         "bool": torch.rand(L, S, generator=gen) > 0.5,
         "float": torch.randn(batch, 1, L, S, generator=gen, dtype=torch.float64).masked_fill(
             torch.rand(batch, 1, L, S, generator=gen) > 0.6, float("-inf"))}[mask]
    kwargs = dict(attn_mask=m, is_causal=mask == "causal", scale=scale, enable_gqa=True)
    with sdpa_kernel([SDPBackend.MATH]):
        expected = F.scaled_dot_product_attention(q, k, v, **kwargs)
    with sdpa_kernel(backends), ReferenceSDPA(math=True):
        got = F.scaled_dot_product_attention(q, k, v, **kwargs)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12, equal_nan=True)
    g = torch.randn(expected.shape, generator=gen, dtype=torch.float64)
    for a, b in zip(torch.autograd.grad(expected.nan_to_num(), (q, k, v), g),
                    torch.autograd.grad(got.nan_to_num(), (q, k, v), g)):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)


def test_fused_gradients_get_the_atomics_allowance_and_nothing_else_does() -> None:
    assert fudge("float16", ("flash",), gradient=True) == FUSED_GRAD_FUDGE
    assert fudge("float16", ("math", "efficient"), gradient=True) == FUSED_GRAD_FUDGE
    assert fudge("float16", ("flash",)) == FUDGE["float16"]
    assert fudge("float32", ("math",), gradient=True) == FUDGE["float32"]


def test_cuda_cases_pin_each_kernel_and_draw_shapes_the_fused_kernels_take() -> None:
    """Drawing needs no GPU. CUDA cases must pin each kernel with a context, keep it for
    every call, and often draw head dims and dtypes the fused kernels take: otherwise a
    CUDA run would test math alone. Which cases a derandomized run draws moves with
    Hypothesis's version (6.168 drew no efficient context in 200), hence 500."""
    contexts, fused_ready = set(), 0

    @settings(max_examples=500, database=None, derandomize=True, phases=[Phase.generate])
    @given(attention_cases("eager", "cuda", form="call"))
    def draw(case):
        nonlocal fused_ready
        assert case.device == "cuda"
        assert all(c.backends == case.calls[0].backends for c in case.calls)
        contexts.add(case.calls[0].backends)
        q = case.spec("q")
        fused_ready += q.shape[-1] % 8 == 0 and q.dtype in ("float16", "bfloat16")

    draw()
    assert {None, ("MATH",), ("FLASH_ATTENTION",), ("EFFICIENT_ATTENTION",),
            ("CUDNN_ATTENTION",)} <= contexts
    assert fused_ready >= 100, fused_ready


def test_cpu_cases_often_run_the_cpu_flash_kernel() -> None:
    """CPU flash takes 4-D inputs of one head dim, the last dim's stride 1, and no
    dropout. Drawn freely, 21 of 300 plain calls met all of that; half the cases are
    shaped for it, so that the CPU fused kernel, where models' calls go, is searched too.
    200 draws, as a share: which cases a derandomized run draws moves with the modules
    imported (Hypothesis draws constants from their source), and 100 drew 25 to 62."""
    kernels = []

    @settings(max_examples=200, database=None, derandomize=True, phases=[Phase.generate])
    @given(plain_cases("eager"))
    def draw(case):
        kernels.append(eager_kernels(case))

    draw()
    assert sum(ks == ("flash",) for ks in kernels) >= len(kernels) / 3, kernels


def test_the_rounding_jitter_moves_computed_results_by_an_eps_and_nothing_else() -> None:
    """Each computed float64 result moves by at most the dtype's eps of itself, the same
    way in every run; views still alias and copies stay copies, so a program's aliasing
    and its in-place ops mean in the rounded run what they mean in eager."""
    x = torch.randn(64, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def run():
        with RoundingJitter(torch.bfloat16):
            y = x * 3.0
            view, copy = y.view(8, 8), y.clone()
            view.add_(0.0)
        return y, view, copy

    y, view, copy = run()
    moved = (y / (x * 3.0) - 1).abs()
    assert 0 < moved.max() <= torch.finfo(torch.bfloat16).eps
    assert view._base is y and torch.equal(copy, y)
    assert torch.equal(run()[0], y)
