"""The oracle catches every fault-injection backend, and shrinks to the fault's condition.

Each backend in tests/faults.py is wrong under one condition only. Hypothesis, within the
`ci` profile's budget, must find a failing case, and the shrunk case must still satisfy
that condition: a report that does not name its cause is not a useful report.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from fuzz.execute import run_case
from fuzz.oracle import judge
from strategies import cases
from tests import faults


def shrunk_failure(backend: str):
    """Run the property against `backend`; return (minimal failing case, its verdict)."""
    last = {}

    @settings(max_examples=300, derandomize=True, database=None, deadline=None,
              phases=(Phase.generate, Phase.shrink), print_blob=False,
              suppress_health_check=list(HealthCheck))
    @given(cases(backend))
    def prop(case):
        verdict = judge(case, run_case(case, backend))
        if not verdict.ok:
            last["case"], last["verdict"] = case, verdict
            raise AssertionError(verdict.signature)

    with pytest.raises(AssertionError):
        prop()
    return last["case"], last["verdict"]


@pytest.mark.parametrize("fault", sorted(faults.CONDITIONS))
def test_fault_is_caught_and_shrunk_to_its_condition(fault: str) -> None:
    case, verdict = shrunk_failure(f"tests.faults:{fault}")
    assert faults.CONDITIONS[fault](case), (
        f"{fault}: the shrunk case lost the fault's condition:\n{case}\n{verdict.explain()}")


def test_faults_are_correct_outside_their_condition() -> None:
    """A fault backend that is wrong everywhere would prove nothing about the oracle."""
    seen = 0

    @settings(max_examples=40, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(cases("eager"))
    def prop(case):
        nonlocal seen
        for fault, condition in faults.CONDITIONS.items():
            if not condition(case):
                seen += 1
                verdict = judge(case, run_case(case, f"tests.faults:{fault}"))
                assert verdict.ok, f"{fault} fails outside its condition: {verdict.explain()}"

    prop()
    assert seen > 100
