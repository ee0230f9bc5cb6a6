"""What a judged case tells Hypothesis: its areas as events, and its error ratio as the
target, where it passed."""

from __future__ import annotations

from fuzz.case import Attention, Case, Program, TensorSpec
from fuzz.execute import run_case
from fuzz.feedback import worst_ratio
from fuzz.oracle import judge
from fuzz.report import KEY_BLOCK, coverage_areas, program_forms


def test_a_case_failing_as_a_known_bug_is_no_summit_to_climb() -> None:
    """A passing case's ratio is the target; a failing one (new or known) scores 0, so
    the targeted phase climbs towards near-bound passes, not back to known bugs."""
    case = Case(tuple((n, TensorSpec((1, 2, 3, 4), seed=i)) for i, n in enumerate("qkv")),
                Program((Attention("out"),), ("out",)))
    passed = judge(case, run_case(case, "inductor"))
    failed = judge(case, run_case(case, "tests.test_oracle:perturbing_by_a_hundredth"))
    assert passed.ok and 0 < worst_ratio([passed]) <= 3
    assert not failed.ok and max(r for _, r in failed.errors) > 3
    assert worst_ratio([failed]) == 0 and worst_ratio([failed, passed]) == worst_ratio([passed])
    assert {"statement:attention", "kernel:flash", "mode:default"} <= coverage_areas(case, passed)


def test_a_program_is_long_from_32_keys_and_runs_over_key_blocks_past_512() -> None:
    def forms(keys: int) -> set[str]:
        shapes = {"q": (1, 1, 3, 4), "k": (1, 1, keys, 4), "v": (1, 1, keys, 4)}
        return program_forms(Case(tuple((n, TensorSpec(s)) for n, s in shapes.items()),
                                  Program((Attention("out"),), ("out",))))

    assert forms(31) == {"sdpa-call"} and forms(32) == forms(KEY_BLOCK) == {"sdpa-call", "long"}
    assert forms(KEY_BLOCK + 1) == {"sdpa-call", "long", "key-blocks"}
