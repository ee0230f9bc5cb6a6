"""Global modes around a call: grad modes and autocast reach the compiled function, faults
that only they trigger are caught under them, and the recompile rule holds what
Dynamo's guards see."""

from __future__ import annotations

import pytest
from hypothesis import strategies as st

from fuzz.case import Attention, CallContext, Case, Program, TensorSpec
from fuzz.execute import run_case
from fuzz.oracle import judge
from fuzz.plan import plan_of
from strategies.cases import attention_cases
from tests import faults
from tests.test_faults import fault_failure, minimal_exit


def single_call(*calls: CallContext) -> Case:
    return Case(tuple((n, TensorSpec((1, 1, 3, 4), seed=i)) for i, n in enumerate("qkv")),
                Program((Attention("out"),), ("out",)), calls=calls)


def test_enable_grad_is_the_default_state_and_the_others_are_not() -> None:
    """A call under `enable_grad` after one with no grad mode repeats its guarded state, so
    it must compile nothing; `no_grad`, `inference_mode` and autocast are new states."""
    plain = CallContext()
    repeats = plan_of(single_call(plain, CallContext(grad_mode="enable_grad"),
                                  CallContext(grad_mode="no_grad"),
                                  CallContext(grad_mode="inference_mode"),
                                  CallContext(autocast="bfloat16"),
                                  CallContext(grad_mode="no_grad", reseed=1))).repeats_context
    assert repeats == (False, True, False, False, False, True)


def test_modes_change_between_calls_and_eager_and_compiled_agree() -> None:
    """Each mode in turn on the same compiled function: Dynamo recompiles where its guards
    fail and reuses where they hold, and every call's outputs (dtype under autocast, and
    requires_grad) agree."""
    calls = (CallContext(), CallContext(grad_mode="no_grad"),
             CallContext(autocast="bfloat16"), CallContext(grad_mode="enable_grad"),
             CallContext(grad_mode="inference_mode"), CallContext(autocast="float16"))
    case = single_call(*calls)
    verdict = judge(case, run_case(case, "aot_eager"))
    assert verdict.ok, verdict.explain()
    assert {"recompile", "metadata", "values"} <= set(verdict.checked)


@pytest.mark.parametrize("fault", sorted(faults.MODE_CONDITIONS))
def test_a_fault_only_a_mode_triggers_is_caught_under_it(fault: str) -> None:
    """Searched over single calls of one size, which draw modes, to keep CI short; the
    fuzzer draws them for programs and model layers too."""
    backend = f"tests.faults:{fault}"
    case, verdict = fault_failure(backend, attention_cases(
        backend, form="call", backward=st.just(False), grows=st.just([])),
        within=faults.MODE_CONDITIONS[fault])
    assert minimal_exit(case, verdict, backend) == 1, verdict.explain()
