"""torch.nn's attention modules (`strategies.modules`): faults that only they reach are
caught and shrunk to their condition; the module is built exactly as torch registers it;
the frame rule of a module call, with masks alike and unlike.

The clean runs of this space are in tests/test_property.py, with the other spaces.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from hypothesis import HealthCheck, given, settings

from fuzz.case import (Case, CompileSpec, ModuleCall, ModuleInput, Program, TensorSpec,
                       module_parameters)
from fuzz.codegen import input_factory
from fuzz.execute import run_case
from fuzz.frames import predict_frames
from fuzz.oracle import judge
from strategies import module_cases
from tests import faults
from tests.test_faults import minimal_exit, shrunk_failure


@pytest.mark.parametrize("fault", sorted(faults.MODULE_CONDITIONS))
def test_a_fault_only_modules_reach_is_caught_and_shrunk(fault: str) -> None:
    """A key padding mask lost in MultiheadAttention's graph call, and a Transformer
    layer's norms run with another epsilon: no other space calls a torch.nn module."""
    backend = f"tests.faults:{fault}"
    case, verdict = shrunk_failure(backend, module_cases(backend))
    assert faults.MODULE_CONDITIONS[fault](case), f"{fault}: condition lost:\n{case}"
    assert minimal_exit(case, verdict, backend) == 1, verdict.explain()


@settings(max_examples=15, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
@given(module_cases())
def test_the_module_is_built_with_exactly_its_parameter_inputs(case) -> None:
    """Every parameter torch registers is one of the case's inputs, of the shape the case
    says, in each run's dtype: none is left at its initial value, and none is a copy (its
    gradient is read from the input itself)."""
    for dtype in (None, torch.float64):
        inputs = input_factory(case)(dtype)
        module, spec = inputs["attn"], case.spec("attn")
        registered = dict(module.named_parameters())
        assert {p: tuple(t.shape) for p, t in registered.items()} == module_parameters(spec)
        for path, name in spec.params:
            assert registered[path] is inputs[name]
            assert registered[path].dtype == (dtype or getattr(torch, case.spec(name).dtype))
        assert module.training == spec.training


def module_case(kind: str, padding_dtype: str | None, mask_dtype: str | None,
                fullgraph: bool = False) -> Case:
    """A module of `kind` (8 wide, 2 heads) on x (3, 1, 8), a decoder layer attending to
    a memory (2, 1, 8) too, with masks of these dtypes."""
    module = ModuleInput(kind, 8, 2, params=())
    params = tuple((path, "w_" + path.replace(".", "_"))
                   for path in module_parameters(module))
    inputs = [("x", TensorSpec((3, 1, 8))), ("attn", replace(module, params=params))]
    inputs += [(name, TensorSpec(module_parameters(module)[path], seed=i))
               for i, (path, name) in enumerate(params)]
    memory = "memory" if kind == "decoder_layer" else None
    if memory:
        inputs.append((memory, TensorSpec((2, 1, 8), seed=3)))
    if padding_dtype:
        inputs.append(("kpm", TensorSpec((1, 3), padding_dtype, "padding", seed=1)))
    if mask_dtype:
        inputs.append(("mask", TensorSpec((3, 3), mask_dtype, "padding", seed=2)))
    call = ModuleCall("out", "attn", "x", memory, memory,
                      key_padding_mask="kpm" if padding_dtype else None,
                      attn_mask="mask" if mask_dtype else None)
    return Case(tuple(inputs), Program((call,), ("out",)), CompileSpec(fullgraph=fullgraph))


@pytest.mark.parametrize("kind", ["mha", "decoder_layer"])
@pytest.mark.parametrize("padding, mask, graphs", [
    (None, None, 1), ("bool", "bool", 1), ("float32", None, 1),
    ("bool", "float32", 0),  # the deprecation warning breaks inside torch.nn: eager call
])
def test_frame_rule_8_a_module_call_is_one_graph_unless_its_masks_warn(kind, padding, mask,
                                                                        graphs) -> None:
    """A decoder layer's masks are its self-attention's, which warns alike."""
    case = module_case(kind, padding, mask)
    assert predict_frames(case.program, dict(case.inputs)) == graphs
    run = run_case(case, "eager")
    assert run.compiled[0].error is None and run.frames.per_call[0] == graphs
    assert judge(case, run).ok
    strict = run_case(module_case(kind, padding, mask, fullgraph=True), "eager")
    assert (strict.compiled[0].error is not None) == (graphs == 0)
