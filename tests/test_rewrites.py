"""Hand-written attention and Inductor's fuse_attention rewrite: the programs are valid,
the rewrite counts are honest, and a fault in the rewrite is caught and shrunk."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings

from fuzz.case import Case, CompileSpec, HandAttention, Program, TensorSpec
from fuzz.codegen import function_source
from fuzz.corpus import load_entry
from fuzz.execute import run_case
from fuzz.handwritten import effective_scale
from fuzz.oracle import judge
from strategies.handwritten import FAMILIES, hand_attention_cases
from tests import faults
from tests.test_faults import fault_failure
from tests.test_oracle import CORPUS

QKV = tuple((name, TensorSpec((2, 4, 8, 16))) for name in ("q", "k", "v"))


def _case(stmt: HandAttention, inputs=QKV, backend: str = "inductor") -> Case:
    return Case(inputs=inputs, program=Program((stmt,), ("out",)), compile=CompileSpec(backend))


@settings(max_examples=30, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
@given(hand_attention_cases("eager"))
def test_drawn_programs_run_as_eager_code_and_the_float64_run_agrees(case) -> None:
    """Every drawn program is well formed: eager and Dynamo's `eager` backend run the
    generated source alike (or raise alike), so Inductor's verdicts are about Inductor."""
    verdict = judge(case, run_case(case, "eager"))
    assert verdict.ok, f"{function_source(case)}\n{verdict.explain()}"


def test_the_canonical_pattern_is_rewritten_on_every_compile() -> None:
    """The rewrite is seen on a second identical compile too: AOTAutograd's cache would
    otherwise hit, skip the pass and leave its counters untouched."""
    case = _case(HandAttention("out"))
    fired = [run_case(case, "inductor").rewrites for _ in range(2)]
    assert fired == [("_sfdp_pattern_1_inference",)] * 2


def test_a_finding_names_the_pattern_and_the_details() -> None:
    """The signature carries the replacement that fired; the explanation says how the
    program differs from the canonical pattern."""
    stmt = HandAttention("out", softmax_dim=-2)  # pytorch/pytorch#196468
    verdict = judge(_case(stmt), run_case(_case(stmt), "inductor"))
    if verdict.ok:
        pytest.skip("this torch honours the softmax dim in the rewrite")
    assert verdict.signature.endswith("@sfdp1")
    assert "except softmax_dim=-2" in verdict.explain()


def test_the_scale_is_what_the_source_computes() -> None:
    assert effective_scale(HandAttention("o"), 16) == 0.25
    assert effective_scale(HandAttention("o", scale_op="mul", scale=3.0), 16) == 3.0
    assert effective_scale(HandAttention("o", scale_op="query_div", scale=2.0), 16) == 0.5
    assert effective_scale(HandAttention("o", scale_op="none"), 16) == 1.0


def test_every_named_family_is_valid() -> None:
    """The family table holds only fields a HandAttention has (and their checks pass)."""
    fields = set(HandAttention.__dataclass_fields__) | {"returns_kv"}
    for name, family in FAMILIES.items():
        assert set(family) <= fields, name


MASK = ("mask", TensorSpec((8, 8), values="additive"))
# A case each rewrite fault must corrupt: the canonical pattern plus its condition.
TRIGGERS = {
    "rewrite_drops_head_broadcast_mask": _case(HandAttention("out", mask="mask", mask_op="add"),
                                               QKV + (MASK,)),
    "rewrite_drops_scale": _case(HandAttention("out", scale=3.0)),
}


# The scale fault's condition is rarer among rewritten programs than CI's budget of
# examples reaches; benchmarks/detection.py searches for it with a time budget.
@pytest.mark.parametrize("fault", ["rewrite_drops_head_broadcast_mask"])
def test_rewrite_fault_is_caught_and_shrunk_to_its_condition(fault: str) -> None:
    backend = f"tests.faults:{fault}"
    case, verdict = fault_failure(backend, hand_attention_cases(backend, freezing=False),
                                   clean_backend="inductor", max_examples=60)
    assert faults.REWRITE_CONDITIONS[fault](case), (
        f"{fault}: the shrunk case lost the fault's condition:\n{case}\n{verdict.explain()}")
    assert verdict.rewrites, "the fault is in the rewrite, so the shrunk case is rewritten"


@pytest.mark.parametrize("fault", sorted(faults.REWRITE_CONDITIONS))
def test_rewrite_fault_is_wrong_exactly_under_its_condition(fault: str) -> None:
    """The canonical families without the condition pass; with it, the fault shows."""
    backend = f"tests.faults:{fault}"
    for stmt in (HandAttention("out"), HandAttention("out", scale_op="mul")):
        case = _case(stmt)
        assert not faults.REWRITE_CONDITIONS[fault](case)
        verdict = judge(case, run_case(case, backend))
        assert verdict.rewrites and verdict.ok, verdict.explain()
    trigger = TRIGGERS[fault]
    assert faults.REWRITE_CONDITIONS[fault](trigger)
    verdict = judge(trigger, run_case(trigger, backend))
    assert verdict.rewrites and not verdict.ok, verdict.explain()


@pytest.mark.parametrize("entry, caught", [
    ("hand-bfloat16-score-product-rounding.json", "float32"),
    ("hand-float16-weights-product-rounding.json", "float16")])
def test_a_16_bit_hand_written_attention_is_held_to_what_its_matrix_products_round(
        entry: str, caught: str) -> None:
    """Two false alarms of a clean Inductor run: hand-written 16-bit attention materializes
    its scores and its weights in that dtype around its matrix products, where Inductor
    rounds them at other points than eager (which was lucky). The float64 run with the
    products' operands and results rounded is their floor. Not looser than that: the float16
    case still catches an output a hundredth of its magnitude off, and so does the bfloat16
    one in float32 (in bfloat16 its scores of 300 leave 17% to rounding)."""
    case = load_entry(CORPUS / entry).case
    verdict = judge(case, run_case(case, "inductor"))
    assert verdict.ok, verdict.explain()
    held = replace(case, inputs=tuple(
        (n, replace(s, dtype=caught) if isinstance(s, TensorSpec) and s.dtype != "bool" else s)
        for n, s in case.inputs))
    perturbed = judge(held, run_case(held, "tests.test_oracle:perturbing_by_a_hundredth"))
    assert {f.check for f in perturbed.failures} == {"values"}, perturbed.explain()
