"""torch.nn's attention modules (`strategies.modules`): faults that only they reach are
caught where their condition holds; the module is built exactly as torch registers it;
the frame rule of a module call, with masks alike and unlike.

The clean runs of this space are in tests/test_property.py, with the other spaces.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from hypothesis import HealthCheck, given, settings

from fuzz.case import (CallContext, Case, CompileSpec, ModuleCall, ModuleInput, Program, TensorSpec,
                       module_parameters)
from fuzz.codegen import input_factory
from fuzz.corpus import load_entry
from fuzz.execute import run_case
from fuzz.frames import predict_frames
from fuzz.kernels import ReferenceSDPA
from fuzz.oracle import judge
from strategies import module_cases
from tests import faults
from tests.test_faults import fault_failure, minimal_exit
from tests.test_oracle import CORPUS


@pytest.mark.parametrize("fault", sorted(faults.MODULE_CONDITIONS))
def test_a_fault_only_modules_reach_is_caught(fault: str) -> None:
    """A key padding mask lost in MultiheadAttention's graph call, and a Transformer
    layer's norms run with another epsilon: no other space calls a torch.nn module."""
    backend = f"tests.faults:{fault}"
    case, verdict = fault_failure(backend, module_cases(backend, freezing=False),
                                  within=faults.MODULE_CONDITIONS[fault])
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


@pytest.mark.parametrize("kind, attentions", [("mha", 1), ("decoder_layer", 2)])
def test_the_reference_logs_a_module_s_scores_as_its_projection_computes_them(kind, attentions):
    """The float64 run logs one query, key and value per `nn.MultiheadAttention` call a
    module makes (a decoder layer: self- and cross-attention), split per head as its
    scores see them: the first is the input projection of x done by hand."""
    case = module_case(kind, None, None)
    inputs = input_factory(case)(torch.float64)
    log = ReferenceSDPA()
    with log:
        module = inputs["attn"]
        module(inputs["x"], inputs["memory"]) if kind == "decoder_layer" else \
            module(inputs["x"], inputs["x"], inputs["x"])
    assert len(log.operands) == attentions
    attn = module if kind == "mha" else module.self_attn  # post-norm: on x itself
    w, b = attn.in_proj_weight[:8], attn.in_proj_bias[:8]
    # (L, B * H, E / H) -> (B * H, L, E / H), as the module splits its heads
    by_hand = (inputs["x"] @ w.T + b).reshape(3, 2, 4).transpose(0, 1)
    torch.testing.assert_close(log.operands[0][0], by_hand.detach())


@pytest.mark.parametrize("entry", ["module-bfloat16-projection-operand-rounding.json",
                                   "module-bfloat16-weights-score-rounding.json"])
def test_a_bfloat16_module_is_held_to_what_bfloat16_resolves_and_no_looser(entry: str):
    """Two false alarms of a clean Inductor run, bfloat16 `nn.MultiheadAttention`s on
    inputs of magnitude 30: one rounds its projected operands (the float64 run with them
    rounded is 0.05 off), one also returns its weights, computed from scores of up to 131
    rounded to bfloat16 (spacing 1). Both pass now; the same cases in float32 still catch
    an output a hundredth of its magnitude off: the looser bounds are bfloat16's alone."""
    case = load_entry(CORPUS / entry).case
    verdict = judge(case, run_case(case, "inductor"))
    assert verdict.ok, verdict.explain()
    wide = replace(case, inputs=tuple(
        (n, replace(s, dtype="float32") if isinstance(s, TensorSpec) else s)
        for n, s in case.inputs))
    perturbed = judge(wide, run_case(wide, "tests.test_oracle:perturbing_by_a_hundredth"))
    assert {f.check for f in perturbed.failures} == {"values"}, perturbed.explain()


def test_under_freezing_each_call_s_fresh_module_compiles_again_and_that_is_no_recompile_bug(
        ) -> None:
    """With `torch._inductor.config.freezing` on and grad disabled, Dynamo guards a
    module's parameters by identity, whatever the backend; each call (and the repeat)
    builds its module anew, so each compiles again. Held to the no-recompile rule, every
    such case was a false alarm."""
    case = replace(module_case("mha", None, None),
                   compile=CompileSpec(freezing=True),
                   calls=(CallContext(grad_mode="no_grad"), CallContext(grad_mode="no_grad")))
    run = run_case(case, "eager")
    assert run.frames.per_call == (1, 1) and run.frames.repeat == 1, run.frames
    assert judge(case, run).ok, judge(case, run).explain()
    thawed = replace(case, compile=CompileSpec())
    assert run_case(thawed, "eager").frames.per_call == (1, 0)
