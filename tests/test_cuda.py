"""The CUDA paths: the properties on the GPU, the kernel eager ran, and a kernel fault.

Skipped, with the reason, where no GPU is present; `benchmarks/gpu_check.sh` runs them
on a GPU machine together with a short CUDA fuzz run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings

from fuzz.api import check_case
from fuzz.case import Case, TensorSpec
from fuzz.calls import _outer
from fuzz.execute import run_case
from fuzz.plan import calls_of
from fuzz.kernels import FUSED, NO_KERNEL, SDPACall, chosen_kernel, kernel_of
from fuzz.codegen import input_factory
from strategies import cases, hand_attention_cases
from strategies.cases import attention_cases
from tests import faults
from tests.test_faults import fault_failure

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="no CUDA device here: the CUDA paths run on a GPU machine (benchmarks/gpu_check.sh)")


def aligned(case: Case) -> Case:
    """The case with its offset layouts made contiguous. pytorch/pytorch#183484: the
    efficient kernel reads tensors whose storage offset breaks its 16-byte alignment and
    faults (misaligned address), eager or compiled, which leaves the process's CUDA context
    unusable for every later case in that process, the worker `check_case` reuses. So
    these tests keep storage aligned; the fuzz driver, which replaces a worker after a
    crash, keeps the offset layout and reports such a fault as a crash."""
    return replace(case, inputs=tuple(
        (name, replace(spec, layout="contiguous"))
        if isinstance(spec, TensorSpec) and spec.layout == "offset" else (name, spec)
        for name, spec in case.inputs))


@given(case=cases(device="cuda").map(aligned))
def test_compiled_sdpa_on_cuda_matches_eager(backend: str, case) -> None:
    check_case(case, backend)


@given(case=hand_attention_cases(device="cuda").map(aligned))
def test_compiled_hand_written_attention_on_cuda_matches_eager(backend: str, case) -> None:
    check_case(case, backend)


def test_the_kernel_named_is_the_one_the_dispatcher_picks() -> None:
    """`chosen_kernel` (priority order, then the first `can_use_*` that accepts the
    SDPAParams) agrees with the dispatcher's own `_fused_sdp_choice`, and the drawn cases
    reach flash and efficient."""
    seen: Counter = Counter()

    @settings(max_examples=150, database=None, derandomize=True)
    @given(attention_cases("eager", "cuda", valid_only=True, form="call").map(aligned))
    def agree(case):
        a = case.program.body[0]
        inputs = input_factory(case)()
        call = SDPACall(inputs["q"], inputs["k"], inputs["v"], inputs.get("mask"),
                        a.dropout_p, a.is_causal, a.scale, a.enable_gqa)
        with _outer(calls_of(case)[0]):
            try:
                expected = kernel_of(torch._fused_sdp_choice(
                    call.query, call.key, call.value, call.attn_mask, call.dropout_p,
                    call.is_causal, scale=call.scale, enable_gqa=call.enable_gqa))
            except RuntimeError:
                expected = NO_KERNEL
            named = chosen_kernel(call)
        seen[named] += 1
        assert named == expected, (named, expected, case)

    agree()
    print("kernels named:", dict(seen))
    assert seen["flash"] and seen["efficient"], seen


@settings(max_examples=40, database=None, derandomize=True)
@given(case=cases(device="cuda").map(aligned))
def test_the_reference_exists_wherever_eager_ran(case) -> None:
    """No fused kernel takes float64: the reference computes SDPA by math, so a context
    that enables only fused kernels must not leave a call without its reference."""
    run = run_case(case, "eager")
    for eager, ref in zip(run.eager, run.reference):
        if eager.error is None:
            assert ref.error is None, f"{ref.error!r} for {case}"


def test_a_fused_kernel_fault_is_caught_and_named_by_its_kernel() -> None:
    """Wrong only where eager's dispatcher picks a fused kernel: the shrunk case runs one,
    and the signature names it."""
    backend = "tests.faults:fused_kernel_drops_last_key"
    case, verdict = fault_failure(backend, attention_cases(backend, "cuda").map(aligned),
                                   max_examples=150)
    assert faults.CONDITIONS["fused_kernel_drops_last_key"](case), verdict.explain()
    tag = verdict.signature.split("@")[-1]
    assert set(tag.split("+")) & set(FUSED), verdict.signature
