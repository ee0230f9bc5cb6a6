"""What "compiled SDPA is correct" means: every check that compares a compiled run.

Each check compares the compiled run with eager on identical inputs, with the float64
reference, or with the frame model; none guesses. What a case implies (its frame count,
which values attention feeds, the scores that condition them) arrives precomputed as a
`Plan`, so this module sees only observations and plain data. It is torch-only and imports
only its torch-only siblings: a repro script carries its source (`fuzz.carry`), so the
fuzzer and the script judge with the very same code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch._dynamo.exc import Unsupported
from torch.backends.cuda import SDPAParams

from fuzz.calls import Frames, Observation, upstream_gradient
from fuzz.errors import message_class, same_error, unwrap
from fuzz.tolerance import (ErrorMeasure, coarsest, fudge, gradient_bounds, measure,
                            measure_exact, row_conditioning, score_conditioning)

# What a kernel computes or refuses. The other checks (backend state, frames, identity,
# mutations) are Dynamo's, the same whichever kernel runs, and keep one signature.
KERNEL_CHECKS = ("outcome", "values", "nan-inf", "metadata", "stride")
# Checks whose condition is the dtype of the value compared: a symptom, not the bug.
NUMERIC_CHECKS = ("values", "nan-inf", "metadata", "stride", "mutation")
DTYPE_CONDITIONS = ("float64", "float32", "bfloat16", "float16", "bool", "int64", "int32",
                    "uint8")
LATER = "later-call"


def compose_key(check: str, where: str, condition: str, message: str, kernels: str,
                later: bool) -> str:
    """A failure's key (`fuzz.identity`): its signature less the symptoms (a dtype, the
    rewrite pattern). `message` is kept only where compiled raised, since it then says how
    the compiler failed; where only eager raised, it says why the input is invalid, which
    is the case's business: its features tell those bugs apart."""
    kind = "" if check in NUMERIC_CHECKS and condition in DTYPE_CONDITIONS else condition
    message = "" if condition.startswith("eager-raised-") else message
    return (f"{check}:{where}" + (f":{kind}" if kind else "")
            + (f"~{message}" if message else "") + (f"@{kernels}" if kernels else "")
            + (f"@{LATER}" if later else ""))


@dataclass(frozen=True)
class Failure:
    """One failed check. `call` is the index of the call it happened in: a failure first
    seen in a later call (a different outer context, or a reused compiled function) has a
    signature of its own, whichever later call it was."""

    check: str
    where: str
    condition: str
    detail: str
    call: int = 0
    rewrite: str = ""  # the Inductor attention replacements that fired (`sfdp5`)
    kernels: str = ""  # on CUDA, for what a kernel computes: the kernels eager ran
    message: str = ""  # for an outcome: the class of the innermost error's message
    subject: str = ""  # what was compared: a returned leaf (`out[1]`), `grad-q`, an input
    # `outcome` where its call's outcome diverged: the inputs and backend state after it
    # are what the side that went on did next, a symptom of that bug, not a bug of its own
    follows: str = ""

    @property
    def signature(self) -> str:
        """What a reader sees: check, site, condition and every tag."""
        tags = "".join(f"@{t}" for t in (self.rewrite, self.kernels) if t)
        later = f"@{LATER}" if self.call else ""
        return f"{self.check}:{self.where}:{self.condition}{tags}{later}"

    @property
    def symptom(self) -> tuple[str, str, str]:
        """Check, site and condition: the failure without its tags and call."""
        return self.check, self.where, self.condition

    @property
    def key(self) -> str:
        """What identifies the bug together with a case's features (`fuzz.identity`)."""
        return compose_key(self.check, self.where, self.condition, self.message,
                           self.kernels, bool(self.call))


@dataclass(frozen=True)
class Scores:
    """One attention's score computation: its operands by name where they are inputs
    (None: computed in the program), the scale it applies (None: SDPA's default), the
    permutation a hand-written form applies first, and which SDPA call of the program it
    is (None: hand-written), whose operands the float64 run logs however computed; a
    torch.nn module's attentions are `attentions` calls from there on (a decoder layer's
    self- and cross-attention), and its scores are conditioned by the worst;
    `scores_rounded`: the scores are known only to the operands' dtype's precision
    (`measure`)."""

    query: str | None
    key: str | None
    value: str | None
    mask: str | None = None
    scale: float | None = None
    perm: tuple[int, ...] = ()
    sdpa: int | None = None
    attentions: int = 1
    scores_rounded: bool = False


@dataclass(frozen=True)
class Plan:
    """What a case implies for judging it, computed once from the case (`fuzz.plan`)."""

    returns: tuple[str, ...]  # the names the function returns
    input_names: tuple[str, ...]  # every input, in order
    tensor_inputs: tuple[str, ...]  # the inputs whose values after a call are compared
    origins: dict[str, str]  # a statement's output -> its kind (`attention`, ...)
    scores: tuple[Scores, ...]  # every attention, in program order
    feeders: dict[str, tuple[int, ...]]  # a value some attention feeds -> those attentions
    exact_ops: int  # ulps a value no attention feeds may differ by
    numeric: bool = True  # False: an unused dropout's draws (docs/oracle.md)
    precision: str | None = None  # the coarsest dtype the program casts through
    backward: bool = False
    fullgraph: bool = False
    must_break: bool = False  # the program breaks the graph, so fullgraph must raise
    hand: bool = False  # hand-written attention: an error in it is a site of its own
    projected: tuple[str, ...] = ()  # model attentions' outputs through an output projection
    expected_frames: int | None = None  # the frame model's count for the first call
    size_rules: tuple[tuple[int, ...], ...] | None = None  # per call: graphs it may compile
    size_mode: str = "automatic"  # how the dynamic-shape rules were chosen
    repeats_context: tuple[bool, ...] = (False,)  # per call: an earlier call's context
    grows: tuple[int, ...] = (0,)  # per call: how much longer L and S are
    autocasts: tuple[str | None, ...] = (None,)  # per call: the dtype autocast computes in
    device: str = "cpu"
    # freezing guards a torch.nn module's parameters by identity, and each call builds its
    # module anew: every call compiles again (`fuzz.plan.frozen_parameters`)
    fresh_parameters: bool = False


@dataclass
class Judgement:
    """What judging found: failures, the checks that ran, and every values measurement
    as (label, where, measure), label the dtype or `grad-q:float32`."""

    failures: list[Failure] = field(default_factory=list)
    checked: set[str] = field(default_factory=set)
    measures: list[tuple[str, str, ErrorMeasure]] = field(default_factory=list)
    excused: list[str] = field(default_factory=list)  # why some comparison had no truth


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def describe_error(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {first[0][:200] if first else ''}"


def _compiled_error(exc: BaseException) -> tuple[str, str, str]:
    """(how the condition names a compiled error, its innermost error's message class,
    what the explanation adds): `internal-` marks a compiler failure."""
    kind, inner, inner_type = unwrap(exc)
    name = ("internal-" if kind == "compiler" else "") + inner_type.__name__
    seen = "" if inner is exc else f" (innermost: {describe_error(inner)})"
    return name, message_class(inner), seen


def check_outcome(e: BaseException | None, c: BaseException | None) -> Failure | None:
    """Both succeed, or both raise the same error: compiled's innermost user-facing error
    (`fuzz.errors.unwrap`) is of eager's type exactly. A compiler failure where eager
    raised a user-facing error is a divergence, not the same error."""
    if e is None and c is None:
        return None
    if e is not None and c is not None and same_error(e, c):
        return None
    if c is None:
        assert e is not None
        return Failure("outcome", "call", f"eager-raised-{type(e).__name__}",
                       f"eager raised {describe_error(e)}; compiled succeeded",
                       message=message_class(e))
    name, message, seen = _compiled_error(c)
    if e is None:
        return Failure("outcome", "call", f"compiled-raised-{name}",
                       f"eager succeeded; compiled raised {describe_error(c)}{seen}",
                       message=message)
    return Failure("outcome", "call", f"{type(e).__name__}-vs-{name}",
                   f"eager raised {describe_error(e)}; compiled raised "
                   f"{describe_error(c)}{seen}", message=message)


def _stride_signature(t: torch.Tensor) -> tuple[tuple[int, int], ...]:
    """Strides on the dims that have more than one element: the only ones that matter;
    none for a tensor with no elements, which addresses no memory (any strides are
    contiguous, and `view` takes any shape of no elements)."""
    if t.numel() == 0:
        return ()
    return tuple((d, s) for d, (n, s) in enumerate(zip(t.shape, t.stride())) if n > 1)


@dataclass(frozen=True)
class Bound:
    """How a value is held: to the float64 run under `conditioning` (and, for a gradient,
    its `terms` and fudge `factor`), or with `exact_ops`, to eager's own value within
    that many ulps."""

    conditioning: float | torch.Tensor = 1.0  # a tensor: one per output row
    precision: str | None = None
    terms: float = 0.0
    factor: float | None = None
    exact_ops: int = 0
    averaged: float = 0.0  # an SDPA output: the largest value it averages (`measure`)
    rounding: float = 0.0  # its error in the float64 run with rounded operands (`measure`)
    scores_rounded: bool = False  # scores known only to the value's dtype (`measure`)


def compare_tensor(where: str, e: torch.Tensor, c: torch.Tensor, r: Any, numeric: bool,
                   bound: Bound, strides: bool = True
                   ) -> tuple[list[Failure], ErrorMeasure | None]:
    """Metadata, stride policy (unless `strides` is off), NaN/Inf positions, then values
    as `bound` says."""
    cond = _dtype(e)
    meta_e, meta_c = ((tuple(e.shape), e.dtype, e.device, e.requires_grad),
                      (tuple(c.shape), c.dtype, c.device, c.requires_grad))
    if meta_e != meta_c:
        return [Failure("metadata", where, cond, f"{where}: eager is shape/dtype/device/"
                        f"requires_grad {meta_e}, compiled {meta_c}")], None
    failures = []
    if strides and _stride_signature(e) != _stride_signature(c):
        failures.append(Failure("stride", where, cond, f"{where}: eager strides {e.stride()}, "
                                f"compiled {c.stride()} for shape {tuple(e.shape)}"))
    ops = bound.exact_ops
    if not (numeric or ops):  # dropout's draws: see docs/oracle.md
        return failures, None
    if not e.is_floating_point():
        if not torch.equal(e, c):
            failures.append(Failure("values", where, cond, f"{where}: {cond} values differ"))
        return failures, None
    e, c = e.detach(), c.detach()
    exact = not ops and isinstance(r, torch.Tensor) and r.shape == e.shape
    # Where eager overflowed but the float64 truth is finite, a finite compiled value is
    # no divergence of its own; the values check below holds it to the truth there.
    rescued = (~torch.isfinite(e) & torch.isfinite(c) & torch.isfinite(r.detach().to(e.device))
               if exact else torch.zeros_like(e, dtype=torch.bool))
    for name, test in (("NaN", torch.isnan), ("+inf", torch.isposinf),
                       ("-inf", torch.isneginf)):
        pe, pc = test(e), test(c)
        differ = (pe != pc) & ~rescued
        if bool(differ.any()):
            failures.append(Failure("nan-inf", where, cond, f"{where}: {name} at "
                            f"{int(pe.sum())} positions in eager, {int(pc.sum())} in compiled, "
                            f"{int(differ.sum())} differ"))
    if ops:
        m = measure_exact(e, c, ops)
        if m is not None and not m.passes:
            failures.append(Failure("values", where, cond, f"{where}: no attention feeds "
                            f"it, yet compiled differs from eager by {m.compiled:.3g}; allowed "
                            f"{m.allowed:.3g} ({ops} ulp of {cond} at its magnitude)"))
        return failures, m
    if not exact:
        return failures, None
    m = measure(e, c, r, bound.conditioning, bound.precision, bound.terms, bound.factor,
                bound.averaged, bound.rounding, bound.scores_rounded)
    if m is not None and not m.passes:
        rounding = f", operand rounding {bound.rounding:.3g}" if bound.rounding else ""
        scores = f" (scores rounded to {cond})" if bound.scores_rounded else ""
        failures.append(Failure("values", where, cond, f"{where}: max error vs float64 is "
                        f"{m.compiled:.3g} compiled, {m.eager:.3g} eager; allowed "
                        f"{m.allowed:.3g} ({m.fudge:g} x max(eager error, {cond} floor "
                        f"x score conditioning {_largest(bound.conditioning):.3g}{scores}"
                        f"{rounding}))"))
    return failures, m


def _largest(conditioning: float | torch.Tensor) -> float:
    if isinstance(conditioning, torch.Tensor):
        return conditioning.max().item() if conditioning.numel() else 1.0
    return conditioning


def _storage_bytes(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All bytes of `t`'s storage, and which of them lie outside `t`'s view."""
    raw = torch.empty(0, dtype=torch.uint8, device=t.device).set_(t.untyped_storage())
    inside = torch.zeros(raw.numel() // t.element_size(), dtype=torch.bool, device=t.device)
    if t.numel():
        inside.as_strided(t.shape, t.stride(), t.storage_offset()).fill_(True)
    return raw, ~inside.repeat_interleave(t.element_size())


def compare_storage(where: str, e: torch.Tensor, c: torch.Tensor) -> list[Failure]:
    """The storage around an input's view (an `offset` or `strided` input lies inside a
    larger buffer) is bit for bit what it was in eager: nothing may write past a view."""
    if e.untyped_storage().nbytes() == e.numel() * e.element_size():
        return []
    raw_e, outside = _storage_bytes(e.detach())
    raw_c, _ = _storage_bytes(c.detach())
    if raw_e.shape != raw_c.shape or torch.equal(raw_e[outside], raw_c[outside]):
        return []
    changed = int((raw_e[outside] != raw_c[outside]).sum())
    return [Failure("mutation", "input-storage", _dtype(e), f"{where}: {changed} byte(s) of "
                    "its storage outside the view differ between eager and compiled")]


def _operand_sets(s: Scores, obs: Observation) -> list[list[torch.Tensor]]:
    """The query, key and value of each of the attention's score computations: as the run
    logged them for SDPA calls (and a module's attentions), else the inputs it names
    (permuted); none where neither is known."""
    if s.sdpa is not None and s.sdpa < len(obs.operands):
        return [list(qkv) for qkv in obs.operands[s.sdpa:s.sdpa + s.attentions]]
    qkv = [obs.inputs.get(n) if n is not None else None for n in (s.query, s.key, s.value)]
    if not all(isinstance(t, torch.Tensor) for t in qkv):
        return []
    return [[t.permute(s.perm) if s.perm else t for t in qkv]]


def _operands(s: Scores, obs: Observation) -> list[torch.Tensor] | None:
    """The operands of the attention's first score computation (`_operand_sets`)."""
    return next(iter(_operand_sets(s, obs)), None)


def conditionings(plan: Plan, reference: Observation) -> list[float]:
    """Per attention, its score conditioning on the float64 inputs (the worst of a
    module's); 1 where it cannot be computed (an invalid call raises in eager anyway)."""
    kappas = []
    for s in plan.scores:
        kappa = max([score_conditioning(q, k, s.scale)
                     for q, k, _ in _operand_sets(s, reference)] or [1.0])
        kappas.append(kappa if math.isfinite(kappa) else 1.0)
    return kappas


def averaged_magnitudes(plan: Plan, reference: Observation) -> list[float]:
    """Per attention, the largest magnitude among the values it averages (float64 run):
    what its output's rounding is relative to, however much the average cancels."""
    found = []
    for s in plan.scores:
        v = max([v.detach().abs().max().item() for _, _, v in _operand_sets(s, reference)
                 if v.numel()] or [0.0])
        found.append(v if math.isfinite(v) else 0.0)
    return found


def row_conditionings(plan: Plan, reference: Observation) -> list[torch.Tensor | None]:
    """Per SDPA call, its score conditioning per query row (`row_conditioning`), where its
    output's rows are its query's: None for a hand-written form, which may permute."""
    rows: list[torch.Tensor | None] = []
    for s in plan.scores:
        qkv = None if s.perm else _operands(s, reference)
        rows.append(row_conditioning(qkv[0], qkv[1], s.scale) if qkv else None)
    return [r if r is not None and bool(torch.isfinite(r).all()) else None for r in rows]


def _worst(kappas: list[float], which: Any) -> float:
    return max([1.0] + [kappas[i] for i in which])


def gradient_terms(plan: Plan, eager: Observation, reference: Observation) -> dict[str, float]:
    """Input name -> the bound on its gradient's terms: the larger of those the float64
    run's backward summed (`fuzz.terms`: a parameter's, over every token) and, for an
    attention's operands, `gradient_bounds`, worst over the attentions that read it, from
    the float64 inputs and the upstream gradients' size."""
    upstream = max([upstream_gradient(t, i).abs().max().item()
                    for i, t in enumerate(eager.leaves or ())
                    if isinstance(t, torch.Tensor) and t.numel()] or [0.0])
    terms = {n: t for n, t in reference.grad_terms.items() if math.isfinite(t)}
    for s in plan.scores:
        qkv = _operands(s, reference)
        if qkv is None:
            continue
        for role, bound in gradient_bounds(*qkv, s.scale, upstream).items():
            name = getattr(s, role)
            if name is not None and math.isfinite(bound):
                terms[name] = max(terms.get(name, 0.0), bound)
    return terms


def _input_name(obs: Observation, leaf: Any) -> str | None:
    return next((n for n, t in obs.inputs.items() if t is leaf), None)


def _site(plan: Plan, leaf_name: str) -> str:
    """Where a leaf comes from, stably across programs: the kind of statement that made
    the returned value (`attention`, `read_backends`, ...) or `input`, not its name, so
    that one bug seen through differently named values has one signature."""
    name = leaf_name.split("[")[0]
    if name in plan.input_names:
        return "input"
    return plan.origins.get(name, name)


def _leaf_name(plan: Plan, obs: Observation, i: int) -> str:
    """The returned name a leaf comes from, with its index inside it: `out`, `backends2[1]`."""
    assert obs.paths is not None
    path = obs.paths[i]
    if len(plan.returns) > 1:
        name, path = plan.returns[path[0]], path[1:]
    else:
        name = plan.returns[0]
    return name + "".join(f"[{k}]" for k in path)


def _under_autocast(plan: Plan, call: int) -> Plan:
    """The plan of one call: under autocast, its ops compute in autocast's dtype, which the
    program's values are then cast through (`Plan.precision`), whatever dtype it returns.
    A float32 decoder layer under bfloat16 autocast returns float32 (from a layer norm),
    but its projections and attention ran in bfloat16: Inductor's output was 0.0113 off
    and eager's 0.0037, held to 3 times that; equal under `emulate_precision_casts`."""
    dtype = plan.autocasts[call] if call < len(plan.autocasts) else None
    return plan if dtype is None else replace(plan, precision=coarsest(dtype, plan.precision))


def judge(plan: Plan, eager: tuple[Observation, ...], reference: tuple[Observation, ...],
          compiled: tuple[Observation, ...], frames: Frames,
          rounded: tuple[Observation | None, ...] = ()) -> Judgement:
    """Every check of the compiled runs against eager, the reference (and where it ran, the
    reference with rounded operands) and the frame model."""
    out = Judgement()
    for i, (e, r, c) in enumerate(zip(eager, reference, compiled)):
        rr = rounded[i] if i < len(rounded) else None
        call_plan = _under_autocast(plan, i)
        if call_plan.fullgraph and call_plan.must_break:
            out.checked.add("fullgraph")
            # An error eager raises too may come first while tracing; that is no failure.
            same = e.error is not None and check_outcome(e.error, c.error) is None
            if not (isinstance(c.error, Unsupported) or same):
                seen = "raised " + describe_error(c.error) if c.error else "succeeded"
                out.failures.append(Failure(
                    "fullgraph", "call", "breaking-program", "the program breaks the graph, "
                    f"so fullgraph=True must raise Unsupported; compiled {seen}", i))
            continue
        out.failures += [replace(f, call=i, detail=f"call {i}: {f.detail}" if i else f.detail)
                         for f in _judge_call(call_plan, e, r, c, rr, out)]
    out.failures += check_frames(plan, compiled, frames, out.checked)
    if plan.hand:  # an error in hand-written attention is its own bug
        out.failures = [replace(f, where="hand_attention") if f.check == "outcome" else f
                        for f in out.failures]
    # A failure shows "first in a later call" only if the first call did not show it.
    first = {f.symptom for f in out.failures if f.call == 0}
    out.failures = [f for f in out.failures if f.call == 0 or f.symptom not in first]
    if plan.device == "cuda":  # each CUDA kernel is its own code for numbers
        out.failures = [_kernel_tagged(f, eager[f.call].kernels) for f in out.failures]
    return out


def _kernel_tagged(failure: Failure, kernels: tuple[str, ...]) -> Failure:
    """The failure with the kernels eager ran in its call (`@flash`, `@none` where no
    kernel could run) in its condition, if its check is about what a kernel computes."""
    if failure.check not in KERNEL_CHECKS or not kernels:
        return failure
    return replace(failure, kernels="+".join(sorted(set(kernels))))


EAGER_ACCEPTS_UNEQUAL_KEY_VALUE = "eager-accepts-unequal-key-value-lengths"


def eager_invalid(plan: Plan, eager: Observation) -> str | None:
    """Why eager's success is eager's own bug, if it is: an attention whose key and value
    have different sequence lengths, which SDPA must refuse (the math kernel does), yet CPU
    flash runs, reading past the value (docs/findings.md). Its output is no truth to hold
    compiled to, and compiled raising is right."""
    if eager.error is not None:
        return None
    for s in plan.scores:
        qkv = _operands(s, eager)
        if qkv and qkv[1].dim() >= 2 and qkv[2].dim() >= 2 and \
                qkv[1].size(-2) != qkv[2].size(-2):
            return EAGER_ACCEPTS_UNEQUAL_KEY_VALUE
    return None


def _judge_call(plan: Plan, eager: Observation, ref: Observation, compiled: Observation,
                rounded: Observation | None, out: Judgement) -> list[Failure]:
    """Every check, whatever failed before it: an outcome or structure divergence does not
    excuse what the call did to its inputs or to the backend state. Where eager's success
    is its own bug (`eager_invalid`), its outputs are not compared, nothing else skipped."""
    out.checked.add("outcome")
    invalid = eager_invalid(plan, eager)
    if invalid:
        out.excused.append(invalid)
    outcome = None if invalid else check_outcome(eager.error, compiled.error)
    failures: list[Failure] = [outcome] if outcome is not None else []
    if plan.numeric:
        out.checked.update(("nan-inf", "values"))
    kappas = conditionings(plan, ref)
    if outcome is None and eager.error is None and not invalid:
        out.checked.add("structure")
        assert eager.leaves is not None and compiled.leaves is not None
        if eager.structure != compiled.structure or len(eager.leaves) != len(compiled.leaves):
            failures.append(Failure("structure", "return", "pytree", f"eager returned "
                            f"{eager.structure}, compiled {compiled.structure}"))
        else:
            out.checked.update(("metadata", "stride", "identity"))
            failures += _judge_leaves(plan, eager, ref, compiled, rounded, kappas, out)
        if plan.backward:
            failures += _judge_backward(plan, eager, ref, compiled, rounded, kappas, out)
    out.checked.add("mutation")
    # After an error, what the call did before it is a site of its own: Dynamo raises
    # tracing errors before its graph runs, which is not what a wrong graph does.
    site = "input-after-error" if eager.error is not None else "input"
    exact = Bound(exact_ops=plan.exact_ops)
    for name in plan.tensor_inputs:
        where = f"input {name} after the call"
        e, c = eager.inputs[name], compiled.inputs[name]
        fails, _ = compare_tensor(where, e, c, ref.inputs.get(name), plan.numeric, exact)
        failures += [Failure("mutation", site, f.condition, f.detail, subject=name)
                     for f in fails]
        failures += [replace(f, subject=name) for f in compare_storage(where, e, c)]
    out.checked.add("backend-state")
    if eager.state_after != compiled.state_after:
        # Which kernels are enabled, or only their order: two different kinds of leak.
        kind = "enabled" if eager.state_after.enabled != compiled.state_after.enabled \
            else "priority"
        failures.append(Failure("backend-state", "after-call", kind,
                        "SDPA backend state right after the call: eager "
                        f"{eager.state_after.describe()}, compiled "
                        f"{compiled.state_after.describe()}"))
    if outcome is not None:
        return [outcome] + [replace(f, follows="outcome") for f in failures[1:]]
    return failures


def _leaf_bound(plan: Plan, name: str, leaf: Any, kappas: list[float],
                rows: list[torch.Tensor | None], averaged: list[float]) -> Bound:
    """A value some attention feeds is held to the float64 run, conditioned by the
    attentions that feed it alone, row by row where it is one SDPA call's own output,
    and relative to the values it averages where it is one attention's output; any other
    value to eager's own (`measure_exact`)."""
    if name not in plan.feeders:
        return Bound(exact_ops=plan.exact_ops)
    which = plan.feeders[name]
    origin = plan.origins.get(name) if len(which) == 1 else None
    scale = averaged[which[0]] if origin in ("attention", "hand_attention") or (
        origin == "model_attention" and name not in plan.projected) else 0.0
    own = rows[which[0]] if origin == "attention" else None
    if own is not None and isinstance(leaf, torch.Tensor) and _broadcasts(own, leaf):
        return Bound(own, plan.precision, averaged=scale)
    return Bound(_worst(kappas, which), plan.precision, averaged=scale,
                 scores_rounded=any(plan.scores[i].scores_rounded for i in which))


def _broadcasts(rows: torch.Tensor, t: torch.Tensor) -> bool:
    try:
        return torch.broadcast_shapes(rows.shape, t.shape) == t.shape
    except RuntimeError:
        return False


def _judge_leaves(plan: Plan, eager: Observation, ref: Observation, compiled: Observation,
                  rounded: Observation | None, kappas: list[float], out: Judgement
                  ) -> list[Failure]:
    """Identity and values of each returned leaf."""
    assert eager.leaves is not None and compiled.leaves is not None
    failures = []
    ref_leaves = ref.leaves if ref.error is None and ref.leaves is not None else ()
    deviations = _deviations(ref_leaves, rounded.leaves if rounded is not None
                             and rounded.error is None else None)
    rows, averaged = row_conditionings(plan, ref), averaged_magnitudes(plan, ref)
    for j, (e, c) in enumerate(zip(eager.leaves, compiled.leaves)):
        where = _leaf_name(plan, eager, j)
        r = ref_leaves[j] if j < len(ref_leaves) else None
        bound = _leaf_bound(plan, where.split("[")[0], e, kappas, rows, averaged)
        if not bound.exact_ops and j < len(deviations):
            bound = replace(bound, rounding=deviations[j])
        found = _check_identity(where, eager, compiled, e, c)
        found += _compare_leaf(plan, where, eager, compiled, e, c, r, bound, out)
        site = _site(plan, where)
        failures += [replace(f, where=site + f.where[len(where):], subject=f.where)
                     for f in found]
    return failures


def _deviations(reference: Any, rounded: Any) -> list[float]:
    """Per leaf (or per gradient, in `reference`'s order), how far the float64 run with
    rounded operands is from the float64 run, where both are finite: 0 where it did not
    run or the leaf is no floating tensor."""
    if rounded is None:
        return []
    found = []
    for r, rr in zip(reference, rounded):
        d = 0.0
        if isinstance(r, torch.Tensor) and isinstance(rr, torch.Tensor) and \
                r.is_floating_point() and r.shape == rr.shape:
            ok = torch.isfinite(r) & torch.isfinite(rr)
            if bool(ok.any()):
                d = (r.detach().double() - rr.detach().double())[ok].abs().max().item()
        found.append(d)
    return found


def _judge_backward(plan: Plan, eager: Observation, ref: Observation, compiled: Observation,
                    rounded: Observation | None, kappas: list[float], out: Judgement
                    ) -> list[Failure]:
    """Backward from the same seeded upstream gradients: both raise alike or both succeed;
    every input's gradient exists in both or in neither, and is compared like an output
    (`grad-q`, `grad-mask`, ...) against the float64 run's gradient."""
    out.checked.add("backward")
    if eager.grad_error is not None or compiled.grad_error is not None:
        outcome = check_outcome(eager.grad_error, compiled.grad_error)
        return [replace(outcome, where="backward")] if outcome else []
    failures = []
    terms = gradient_terms(plan, eager, ref)
    ref_grads = ref.grads or {}
    names = list(ref_grads)
    deviations = dict(zip(names, _deviations(
        [ref_grads[n] for n in names],
        [(rounded.grads or {}).get(n) for n in names] if rounded is not None
        and rounded.grads is not None else None)))
    for name, ge in (eager.grads or {}).items():
        gc, where = (compiled.grads or {}).get(name), f"grad-{name}"
        if (ge is None) != (gc is None):
            failures.append(Failure("structure", where, "none", f"{where}: eager "
                            f"{'has no' if ge is None else 'has a'} gradient, compiled "
                            f"{'has no' if gc is None else 'has a'} gradient", subject=where))
        elif ge is not None:
            # An attention whose operands the program computes may read any input.
            readers = [i for i, s in enumerate(plan.scores)
                       if name in (s.query, s.key, s.value, s.mask)
                       or None in (s.query, s.key, s.value)]
            bound = Bound(_worst(kappas, readers), plan.precision, terms.get(name, 0.0),
                          fudge(_dtype(ge), eager.kernels, gradient=True),
                          rounding=deviations.get(name, 0.0))
            # A gradient's layout is the autograd engine's choice, not the program's: eager
            # SDPA's own backward returns non-contiguous gradients, AOTAutograd others.
            fails, m = compare_tensor(where, ge, gc, ref_grads.get(name), plan.numeric,
                                      bound, strides=False)
            failures += [replace(f, subject=where) for f in fails]
            if m is not None:
                out.measures.append((f"{where}:{_dtype(ge)}", where, m))
    return failures


def check_frames(plan: Plan, compiled: tuple[Observation, ...], frames: Frames,
                 checked: set[str]) -> list[Failure]:
    """First call: the frame model's count. A later call from a context already seen, and
    the repeat of the first call: nothing new, except where freezing guards parameters
    that each call builds anew. A reused compiled function: nothing at all."""
    if compiled[0].error is not None:
        return []
    checked.add("recompile")
    failures = []
    expected = 0 if frames.reused else plan.expected_frames
    if expected is not None:
        checked.add("frames")
    if expected is not None and frames.per_call[0] != expected:
        failures.append(Failure("frames", "first-call", f"expected-{expected}",
                        f"the counting backend compiled {frames.per_call[0]} graph(s) on the "
                        f"first call; the frame model predicts {expected}"
                        + (" (warm from an equal case)" if frames.reused else "")))
    sized = None if frames.reused else plan.size_rules
    if sized is not None:  # calls of other sequence lengths: the dynamic-shape rules
        for i, (got, want) in enumerate(zip(frames.per_call[1:], sized[1:]), start=1):
            if got not in want and compiled[i].error is None:
                failures.append(Failure("recompile", "call", f"size-{plan.size_mode}",
                                f"call {i} (lengths +{plan.grows[i]}, {plan.size_mode} "
                                f"shapes) compiled {got} graph(s); the dynamic-shape rules "
                                f"allow {' or '.join(map(str, sorted(want)))}", i))
    elif not plan.fresh_parameters:
        for i, seen in enumerate(plan.repeats_context[1:], start=1):
            if seen and frames.per_call[i] and compiled[i].error is None:
                failures.append(Failure("recompile", "call", "same-context",
                                f"call {i} repeats an earlier call's context with inputs of "
                                f"equal shapes but compiled {frames.per_call[i]} more "
                                "graph(s)", i))
    if frames.repeat and not plan.fresh_parameters:
        failures.append(Failure("recompile", "repeat", "equal-inputs",
                        f"repeating the first call with equal inputs compiled {frames.repeat} "
                        "more graph(s)"))
    return failures


def _compare_leaf(plan: Plan, where: str, eager: Observation, compiled: Observation, e: Any,
                  c: Any, r: Any, bound: Bound, out: Judgement) -> list[Failure]:
    if type(e) is not type(c):
        return [Failure("structure", where, "type", f"{where}: eager returned a "
                        f"{type(e).__name__}, compiled a {type(c).__name__}")]
    if isinstance(e, torch.Tensor):
        fails, m = compare_tensor(where, e, c, r, plan.numeric, bound)
        if m is not None and not bound.exact_ops:
            out.measures.append((_dtype(e), where, m))
        return fails
    if isinstance(e, SDPAParams):
        return _compare_params(plan, where, eager, compiled, e, c, r, bound)
    if e != c:
        return [Failure("values", where, type(e).__name__,
                        f"{where}: eager returned {e!r}, compiled {c!r}")]
    return []


def _compare_params(plan: Plan, where: str, eager: Observation, compiled: Observation,
                    e: Any, c: Any, r: Any, bound: Bound) -> list[Failure]:
    """An SDPAParams's tensor fields are the very objects eager's are (mapped to each run's
    own inputs), or equal tensors where eager's are not inputs; other fields are equal."""
    failures = []
    for attr in ("query", "key", "value", "attn_mask"):
        fe, fc = getattr(e, attr), getattr(c, attr)
        failures += _check_identity(f"{where}.{attr}", eager, compiled, fe, fc)
        if isinstance(fe, torch.Tensor) and isinstance(fc, torch.Tensor):
            fr = getattr(r, attr, None) if r is not None else None
            failures += compare_tensor(f"{where}.{attr}", fe, fc, fr, plan.numeric, bound)[0]
        elif (fe is None) != (fc is None):
            failures.append(Failure("structure", f"{where}.{attr}", "none",
                                    f"{where}.{attr}: eager {fe!r}, compiled {fc!r}"))
    for attr in ("dropout", "is_causal", "enable_gqa"):
        if getattr(e, attr) != getattr(c, attr):
            failures.append(Failure("values", f"{where}.{attr}", "params", f"{where}.{attr}: "
                            f"eager {getattr(e, attr)!r}, compiled {getattr(c, attr)!r}"))
    return failures


def _check_identity(where: str, eager: Observation, compiled: Observation, e: Any, c: Any
                    ) -> list[Failure]:
    """An input returned as itself by eager must be returned as itself by compiled."""
    name_e, name_c = _input_name(eager, e), _input_name(compiled, c)
    if name_e == name_c:
        return []
    said = {n: f"input {n} itself" if n else "a new object" for n in (name_e, name_c)}
    return [Failure("identity", where, f"returns-{name_e or 'new'}",
                    f"{where}: eager returns {said[name_e]}, compiled returns {said[name_c]}")]
