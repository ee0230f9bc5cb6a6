"""A case's judging plan: everything the checks need to know about the case, computed once.

The judge (`fuzz.check`) and the repro script consume the same frozen `Plan`; the script
holds it as a literal, so nothing about a case is derived twice.
"""

from __future__ import annotations

import math

from fuzz.case import (STATEMENTS, Attention, Case, HandAttention, ModelAttention, ModuleCall,
                       ModuleInput, TensorSpec, attention_feeds, exact_ops, walk)
from fuzz.calls import Call
from fuzz.check import Plan, Scores
from fuzz.frames import must_break, predict_frames, size_recompiles
from fuzz.handwritten import effective_scale, logical_head_dim, program_precision
from fuzz.rewrites import hand_attentions


def _scores(case: Case) -> tuple[Scores, ...]:
    """Every attention's operands and scale, as its scores compute them. A hand-written
    division by zero has no finite scores, so no scale: its conditioning is 1. A model's
    attention computes its operands from its inputs: only the float64 run's log of its
    SDPA call knows them, and so does it a torch.nn module's attentions
    (`ReferenceSDPA` logs its input projection's output): one for each
    `nn.MultiheadAttention` call it makes. Its scores are known only to its dtype's
    precision (`scores_rounded`) where it returns its attention weights (it computes them
    with `bmm` in its own dtype), and in a decoder layer, whose cross-attention's query
    is the self-attention's output, rounded: a chain."""
    found: list[Scores] = []
    calls = 0  # SDPA calls so far, in the order the program makes them
    for a in walk(case.program.body):
        if isinstance(a, Attention):
            found.append(Scores(a.query, a.key, a.value, a.mask, a.scale, sdpa=calls))
            calls += 1
        elif isinstance(a, ModelAttention):
            found.append(Scores(None, None, None, a.mask, a.scale, sdpa=calls))
            calls += 1
        elif isinstance(a, ModuleCall):
            module = case.spec(a.module)
            assert isinstance(module, ModuleInput)
            attentions = 2 if module.module == "decoder_layer" else 1
            found.append(Scores(None, None, None, sdpa=calls, attentions=attentions,
                                scores_rounded=a.need_weights or attentions > 1))
            calls += attentions
        elif isinstance(a, HandAttention):
            spec = case.spec(a.query)
            assert isinstance(spec, TensorSpec)
            scale = effective_scale(a, logical_head_dim(a, spec.shape))
            found.append(Scores(a.query, a.key, a.value, a.mask,
                                scale if math.isfinite(scale) else None, a.perm))
    return tuple(found)


def _expected_frames(case: Case) -> int | None:
    try:
        return predict_frames(case.program, dict(case.inputs), case.compile.dynamic)
    except ValueError:
        return None  # a construct the frame model has no rule for: never generated


def frozen_parameters(case: Case) -> bool:
    """Whether freezing guards parameters that each call builds anew: under a disabled grad
    mode Dynamo guards a module's parameters by identity (`is_parameter_freezing`), and
    every call, the repeat included, gets a fresh torch.nn module input."""
    return case.compile.freezing and any(isinstance(s, ModuleInput) for _, s in case.inputs)


def autocast_precisions(case: Case) -> tuple[str | None, ...]:
    """Per call, the dtype its autocast computes in, where it casts anything: autocast
    leaves float64 alone."""
    casts = any(isinstance(s, TensorSpec) and s.dtype in ("float32", "float16", "bfloat16")
                for _, s in case.inputs)
    return tuple(c.autocast if casts else None for c in case.calls)


def plan_of(case: Case) -> Plan:
    origins = {s.out: op for s in walk(case.program.body) if getattr(s, "out", None)
               for op, cls in STATEMENTS.items() if type(s) is cls}
    sized = size_recompiles(case)
    contexts = [c.guarded for c in case.calls]
    return Plan(
        returns=tuple(case.program.returns),
        input_names=case.input_names,
        tensor_inputs=tuple(n for n, s in case.inputs if isinstance(s, TensorSpec)),
        origins=origins,
        scores=_scores(case),
        feeders=attention_feeds(case),
        exact_ops=exact_ops(case),
        numeric=case.program.draws_comparable,
        precision=program_precision(case),
        backward=case.backward,
        fullgraph=case.compile.fullgraph,
        must_break=must_break(case.program, dict(case.inputs)),
        hand=bool(hand_attentions(case)),
        projected=tuple(s.out for s in walk(case.program.body)
                        if isinstance(s, ModelAttention) and s.out_proj is not None
                        or isinstance(s, ModuleCall)),
        expected_frames=_expected_frames(case),
        size_rules=None if sized is None else tuple(tuple(sorted(a)) for a in sized),
        size_mode={True: "dynamic", False: "static", None: "automatic"}[case.compile.dynamic],
        repeats_context=tuple(k in contexts[:i] for i, k in enumerate(contexts)),
        grows=tuple(c.grow for c in case.calls),
        autocasts=autocast_precisions(case),
        device=case.device,
        fresh_parameters=frozen_parameters(case))


def calls_of(case: Case) -> tuple[Call, ...]:
    """The case's calls as `fuzz.calls` makes them."""
    return tuple(Call(c.backends, c.set_priority, c.reseed, c.grow, c.grad_mode, c.autocast)
                 for c in case.calls)
