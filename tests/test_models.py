"""Attention layers as models write them (`strategies.models`): faults that only they reach
are caught where their condition holds.

The clean runs of this space are in tests/test_property.py, with the other spaces.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from fuzz.case import Case, CompileSpec, ModelAttention, Program, TensorSpec
from fuzz.execute import run_case
from fuzz.identity import features
from fuzz.minimal import Target, minimal_script
from fuzz.oracle import judge
from fuzz.plan import plan_of
from fuzz.report import program_forms
from strategies import model_attention_cases
from tests import faults
from tests.test_faults import fault_failure, minimal_exit


@pytest.mark.parametrize("fault", sorted(faults.MODEL_CONDITIONS))
def test_a_fault_only_model_layers_reach_is_caught(fault: str) -> None:
    """Self-attention on one aliased tensor, and a decode step against a cache of 256
    keys or more: neither is drawn by the space of SDPA calls on inputs."""
    backend = f"tests.faults:{fault}"
    case, verdict = fault_failure(backend, model_attention_cases(backend, freezing=False),
                                  within=faults.MODEL_CONDITIONS[fault])
    assert minimal_exit(case, verdict, backend) == 1, verdict.explain()


def test_a_stacked_layer_is_judged_downstream_of_both_layers() -> None:
    """A second layer over the first's output (chained attention): its output is held to
    the float64 run as fed by both attentions, and the case and its script pass clean."""
    first = ModelAttention("out", "x", 2, 1, 4, ("w_qkv",), rotary=("cos", "sin"),
                           gqa="repeat_kv", is_causal=True, out_proj="w_o")
    second = replace(first, out="out2", x="out")
    case = Case((("x", TensorSpec((1, 5, 6), "bfloat16", seed=1)),
                 ("w_qkv", TensorSpec((16, 6), "bfloat16", seed=2)),
                 ("cos", TensorSpec((5, 4), "bfloat16", seed=3)),
                 ("sin", TensorSpec((5, 4), "bfloat16", seed=4)),
                 ("w_o", TensorSpec((6, 8), "bfloat16", seed=5))),
                Program((first, second), ("out2",)), CompileSpec(backend="inductor"))
    assert plan_of(case).feeders["out2"] == (0, 1)
    assert "model:stacked" in features(case) and "chained" in program_forms(case)
    verdict = judge(case, run_case(case, "inductor"))
    assert verdict.ok, verdict.explain()
    [(_, fudge, floor, _)] = [b for b in verdict.bounds if b[0] == "out2"]
    source = minimal_script(case, Target("values", "model_attention", "bfloat16", "out2",
                                         fudge=fudge, floor=floor), "eager")
    with pytest.raises(SystemExit) as exited:
        exec(compile(source, "<minimal>", "exec"), {"__name__": "__main__"})
    assert not exited.value.code, source
