"""What "compiled SDPA is correct" means: every check that compares a compiled run.

Each check compares the compiled run with eager on identical inputs, with the float64
reference, or with the frame model; none guesses. A failure names its check and the
condition it happened under, which together form its signature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Iterator

import torch
from torch._dynamo.exc import Unsupported
from torch.backends.cuda import SDPAParams

from fuzz import rewrites
from fuzz.case import (STATEMENTS, Attention, Case, HandAttention, TensorSpec, exact_ops,
                       fed_by_attention, walk)
from fuzz.execute import CaseRun, Observation, upstream_gradient
from fuzz.frames import must_break, predict_frames, size_recompiles
from fuzz.errors import message_class, same_error, unwrap
from fuzz.handwritten import effective_scale, program_precision
from fuzz.identity import compose_key
from fuzz.tolerance import (ErrorMeasure, fudge, gradient_bounds, measure, measure_exact,
                            score_conditioning)

# What a kernel computes or refuses. The other checks (backend state, frames, identity,
# mutations) are Dynamo's, the same whichever kernel runs, and keep one signature.
KERNEL_CHECKS = ("outcome", "values", "nan-inf", "metadata", "stride")


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

    @property
    def signature(self) -> str:
        """What a reader sees: check, site, condition and every tag."""
        tags = "".join(f"@{t}" for t in (self.rewrite, self.kernels) if t)
        later = "@later-call" if self.call else ""
        return f"{self.check}:{self.where}:{self.condition}{tags}{later}"

    @property
    def key(self) -> str:
        """What identifies the bug with a case's features (`fuzz.identity`): the
        signature less its symptoms (the dtype, the rewrite pattern), plus an outcome's
        message class."""
        return compose_key(self.check, self.where, self.condition, self.message,
                           self.kernels, bool(self.call))


@dataclass(frozen=True)
class Verdict:
    failures: tuple[Failure, ...]
    checked: tuple[str, ...]
    errors: tuple[tuple[str, float], ...]  # (dtype, compiled/eager error ratio) per output
    rewrites: tuple[str, ...] = ()  # Inductor attention patterns that fired
    notes: tuple[str, ...] = ()  # what a reader of a failure needs to know about the case
    kernels: tuple[str, ...] = ()  # the SDPA kernels eager ran, in the order of first use

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def signature(self) -> str:
        return self.failures[0].signature if self.failures else "pass"

    def explain(self) -> str:
        if self.ok:
            return "compiled matches eager on every check"
        return "\n".join([f"[{f.signature}] {f.detail}" for f in self.failures]
                         + list(self.notes))


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _describe(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {first[0][:200] if first else ''}"


def _compiled_error(exc: BaseException) -> tuple[str, str, str]:
    """(how the condition names a compiled error, its innermost error's message class,
    what the explanation adds): `internal-` marks a compiler failure."""
    kind, inner, inner_type = unwrap(exc)
    name = ("internal-" if kind == "compiler" else "") + inner_type.__name__
    seen = "" if inner is exc else f" (innermost: {_describe(inner)})"
    return name, message_class(inner), seen


def check_outcome(eager: Observation, compiled: Observation) -> Failure | None:
    """Both succeed, or both raise the same error: compiled's innermost user-facing error
    (`fuzz.errors.unwrap`) is of eager's type exactly. A compiler failure where eager
    raised a user-facing error is a divergence, not the same error."""
    e, c = eager.error, compiled.error
    if e is None and c is None:
        return None
    if e is not None and c is not None and same_error(e, c):
        return None
    if c is None:
        assert e is not None
        return Failure("outcome", "call", f"eager-raised-{type(e).__name__}",
                       f"eager raised {_describe(e)}; compiled succeeded",
                       message=message_class(e))
    name, message, seen = _compiled_error(c)
    if e is None:
        return Failure("outcome", "call", f"compiled-raised-{name}",
                       f"eager succeeded; compiled raised {_describe(c)}{seen}",
                       message=message)
    return Failure("outcome", "call", f"{type(e).__name__}-vs-{name}",
                   f"eager raised {_describe(e)}; compiled raised {_describe(c)}{seen}",
                   message=message)


def _stride_signature(t: torch.Tensor) -> tuple[tuple[int, int], ...]:
    """Strides on the dims that have more than one element: the only ones that matter."""
    return tuple((d, s) for d, (n, s) in enumerate(zip(t.shape, t.stride())) if n > 1)


def compare_tensor(where: str, e: torch.Tensor, c: torch.Tensor, r: Any, numeric: bool,
                   conditioning: float = 1.0, precision: str | None = None,
                   strides: bool = True, terms: float = 0.0, factor: float | None = None,
                   exact_ops: int = 0) -> tuple[list[Failure], ErrorMeasure | None]:
    """Metadata, stride policy (unless `strides` is off), NaN/Inf positions, then values:
    against the reference (with fudge `factor`, if not the dtype's own), or, with
    `exact_ops`, against eager itself to within that many ulps (`measure_exact`)."""
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
    if not (numeric or exact_ops):  # dropout's draws: see docs/oracle.md
        return failures, None
    if not e.is_floating_point():
        if not torch.equal(e, c):
            failures.append(Failure("values", where, cond, f"{where}: {cond} values differ"))
        return failures, None
    e, c = e.detach(), c.detach()
    exact = not exact_ops and isinstance(r, torch.Tensor) and r.shape == e.shape
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
    if exact_ops:
        m = measure_exact(e, c, exact_ops)
        if m is not None and not m.passes:
            failures.append(Failure("values", where, cond, f"{where}: no attention feeds "
                            f"it, yet compiled differs from eager by {m.compiled:.3g}; allowed "
                            f"{m.allowed:.3g} ({exact_ops} ulp of {cond} at its magnitude)"))
        return failures, None
    if not exact:
        return failures, None
    m = measure(e, c, r, conditioning, precision, terms, factor)
    if m is not None and not m.passes:
        failures.append(Failure("values", where, cond, f"{where}: max error vs float64 is "
                        f"{m.compiled:.3g} compiled, {m.eager:.3g} eager; allowed "
                        f"{m.allowed:.3g} ({m.fudge:g} x max(eager error, {cond} floor "
                        f"x score conditioning {conditioning:.3g}))"))
    return failures, m


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


def case_conditioning(case: Case, reference: Observation) -> float:
    """The worst score conditioning over the program's attention calls on its inputs, from
    the float64 run; 1 where it cannot be computed (an invalid call raises in eager anyway,
    and a hand-written division by zero has no finite scores)."""
    worst = 1.0
    for stmt in walk(case.program.body):
        if not isinstance(stmt, (Attention, HandAttention)):
            continue
        q, k = reference.inputs.get(stmt.query), reference.inputs.get(stmt.key)
        if not (isinstance(q, torch.Tensor) and isinstance(k, torch.Tensor)):
            continue
        if isinstance(stmt, HandAttention):  # the scores the source computes
            if stmt.perm:
                q, k = q.permute(stmt.perm), k.permute(stmt.perm)
            scale = effective_scale(stmt, q.size(-1))
        else:
            scale = stmt.scale
        kappa = score_conditioning(q, k, scale)
        if math.isfinite(kappa):
            worst = max(worst, kappa)
    return worst


def _input_name(obs: Observation, leaf: Any) -> str | None:
    return next((n for n, t in obs.inputs.items() if t is leaf), None)


def _is_graph_break(error: BaseException | None) -> bool:
    return isinstance(error, Unsupported)


def judge(case: Case, run: CaseRun) -> Verdict:
    """Every check of the compiled run against eager, the reference and the frame model."""
    failures: list[Failure] = []
    checked: set[str] = set()
    ratios: list[tuple[str, float]] = []
    breaks = must_break(case.program)
    for i, (eager, ref, compiled) in enumerate(zip(run.eager, run.reference, run.compiled)):
        if case.compile.fullgraph and breaks:
            checked.add("fullgraph")
            # An error eager raises too may come first while tracing; that is no failure.
            same_error = eager.error is not None and check_outcome(eager, compiled) is None
            if not (_is_graph_break(compiled.error) or same_error):
                failures.append(Failure("fullgraph", "call", "breaking-program",
                                f"the program breaks the graph, so fullgraph=True must raise "
                                f"Unsupported; compiled "
                                f"{'raised ' + _describe(compiled.error) if compiled.error else 'succeeded'}",
                                i))
            continue
        failures += [replace(f, call=i, detail=f"call {i}: {f.detail}" if i else f.detail)
                     for f in _judge_call(case, eager, ref, compiled, checked, ratios)]
    failures += _check_frames(case, run, checked)
    if rewrites.hand_attentions(case):  # an error in hand-written attention is its own bug
        failures = [replace(f, where="hand_attention") if f.check == "outcome" else f
                    for f in failures]
    # A failure shows "first in a later call" only if the first call did not show it.
    first = {(f.check, f.where, f.condition) for f in failures if f.call == 0}
    failures = [f for f in failures if f.call == 0 or (f.check, f.where, f.condition) not in first]
    if run.rewrites:  # shown on the signature: the replacement is a symptom, not the bug
        tag = "+".join(sorted({rewrites.short(p) for p in run.rewrites}))
        failures = [replace(f, rewrite=tag) for f in failures]
    if case.device == "cuda":  # each CUDA kernel is its own code for numbers
        failures = [_kernel_tagged(f, run.eager[f.call].kernels) for f in failures]
    kernels = tuple(dict.fromkeys(run.eager[0].kernels))
    return Verdict(tuple(failures), tuple(sorted(checked)), tuple(ratios), run.rewrites,
                   _hand_notes(case, run), kernels)


def _kernel_tagged(failure: Failure, kernels: tuple[str, ...]) -> Failure:
    """The failure with the kernels eager ran in its call (`@flash`, `@none` where no
    kernel could run) in its condition, if its check is about what a kernel computes."""
    if failure.check not in KERNEL_CHECKS or not kernels:
        return failure
    return replace(failure, kernels="+".join(sorted(set(kernels))))


def _hand_notes(case: Case, run: CaseRun) -> tuple[str, ...]:
    """What the case's hand-written attention is, as the canonical pattern and its
    differences, and whether Inductor replaced it with SDPA."""
    notes = []
    for a in rewrites.hand_attentions(case):
        differs = a.deviations()
        notes.append("hand-written attention: the canonical pattern "
                     "softmax(q @ k.transpose(-2, -1) / sqrt(E), -1) @ v"
                     + (", except " + ", ".join(differs) if differs else ""))
    if notes:
        notes.append("Inductor's fuse_attention replaced it with SDPA: " + ", ".join(
            run.rewrites) if run.rewrites else "Inductor's fuse_attention did not rewrite it")
    return tuple(notes)


def _judge_call(case: Case, eager: Observation, ref: Observation, compiled: Observation,
                checked: set[str], ratios: list[tuple[str, float]]) -> list[Failure]:
    """Every check, whatever failed before it: an outcome or structure divergence does not
    excuse what the call did to its inputs or to the backend state."""
    checked.add("outcome")
    outcome = check_outcome(eager, compiled)
    failures: list[Failure] = [outcome] if outcome is not None else []
    numeric = case.program.draws_comparable
    ops = exact_ops(case)
    if numeric:
        checked.update(("nan-inf", "values"))
    kappa = case_conditioning(case, ref)
    precision = program_precision(case)
    if outcome is None and eager.error is None:
        checked.add("structure")
        assert eager.leaves is not None and compiled.leaves is not None
        if eager.structure != compiled.structure or len(eager.leaves) != len(compiled.leaves):
            failures.append(Failure("structure", "return", "pytree", f"eager returned "
                            f"{eager.structure}, compiled {compiled.structure}"))
        else:
            checked.update(("metadata", "stride", "identity"))
            failures += _judge_leaves(case, eager, ref, compiled, numeric, ratios, kappa,
                                      precision)
        if case.backward:
            failures += _judge_backward(eager, ref, compiled, numeric, kappa, precision,
                                        checked, ratios, _gradient_terms(case, eager, ref))
    checked.add("mutation")
    # After an error, what the call did before it is a site of its own: Dynamo raises
    # tracing errors before its graph runs, which is not what a wrong graph does.
    site = "input-after-error" if eager.error is not None else "input"
    for name, spec in case.inputs:
        if not isinstance(spec, TensorSpec):
            continue
        where = f"input {name} after the call"
        fails, _ = compare_tensor(where, eager.inputs[name], compiled.inputs[name],
                                  ref.inputs.get(name), numeric, kappa, precision,
                                  exact_ops=ops)
        failures += [Failure("mutation", site, f.condition, f.detail) for f in fails]
        failures += compare_storage(where, eager.inputs[name], compiled.inputs[name])
    checked.add("backend-state")
    if eager.state_after != compiled.state_after:
        # Which kernels are enabled, or only their order: two different kinds of leak.
        kind = "enabled" if eager.state_after.enabled != compiled.state_after.enabled \
            else "priority"
        failures.append(Failure("backend-state", "after-call", kind,
                        "SDPA backend state right after the call: eager "
                        f"{eager.state_after.describe()}, compiled "
                        f"{compiled.state_after.describe()}"))
    return failures


def _judge_leaves(case: Case, eager: Observation, ref: Observation, compiled: Observation,
                  numeric: bool, ratios: list[tuple[str, float]], kappa: float,
                  precision: str | None) -> list[Failure]:
    """Identity and values of each returned leaf; a leaf no attention feeds is held to
    eager's own value (`measure_exact`), one that attention feeds to the float64 run."""
    assert eager.leaves is not None and compiled.leaves is not None
    failures = []
    ref_leaves = ref.leaves if ref.error is None and ref.leaves is not None else ()
    fed = fed_by_attention(case)
    for j, (e, c) in enumerate(zip(eager.leaves, compiled.leaves)):
        where = _leaf_name(case, eager, j)
        r = ref_leaves[j] if j < len(ref_leaves) else None
        ops = 0 if where.split("[")[0] in fed else exact_ops(case)
        found = _check_identity(where, eager, compiled, e, c)
        found += _compare_leaf(where, eager, compiled, e, c, r, numeric, ratios, kappa,
                               precision, ops)
        site = _site(case, where)
        failures += [replace(f, where=site + f.where[len(where):]) for f in found]
    return failures


def _gradient_terms(case: Case, eager: Observation, ref: Observation) -> dict[str, float]:
    """Input name -> the bound on its gradient's terms (`gradient_bounds`), worst over the
    program's attention, from the float64 inputs and the upstream gradients' size."""
    upstream = max([upstream_gradient(t, i).abs().max().item()
                    for i, t in enumerate(eager.leaves or ())
                    if isinstance(t, torch.Tensor) and t.numel()] or [0.0])
    terms: dict[str, float] = {}
    for a in walk(case.program.body):
        if not isinstance(a, (Attention, HandAttention)):
            continue
        q, k, v = (ref.inputs.get(n) for n in (a.query, a.key, a.value))
        if not all(isinstance(t, torch.Tensor) for t in (q, k, v)):
            continue
        if isinstance(a, HandAttention):
            if a.perm:
                q, k, v = q.permute(a.perm), k.permute(a.perm), v.permute(a.perm)
            scale = effective_scale(a, q.size(-1))
        else:
            scale = a.scale
        if not math.isfinite(scale if scale is not None else 0.0):
            continue
        for role, bound in gradient_bounds(q, k, v, scale, upstream).items():
            name = getattr(a, role)
            if name is not None and math.isfinite(bound):
                terms[name] = max(terms.get(name, 0.0), bound)
    return terms


def _judge_backward(eager: Observation, ref: Observation, compiled: Observation,
                    numeric: bool, kappa: float, precision: str | None, checked: set[str],
                    ratios: list[tuple[str, float]], terms: dict[str, float]
                    ) -> list[Failure]:
    """Backward from the same seeded upstream gradients: both raise alike or both succeed;
    every input's gradient exists in both or in neither, and is compared like an output
    (`grad-q`, `grad-mask`, ...) against the float64 run's gradient."""
    checked.add("backward")
    if eager.grad_error is not None or compiled.grad_error is not None:
        outcome = check_outcome(replace(eager, error=eager.grad_error),
                                replace(compiled, error=compiled.grad_error))
        return [replace(outcome, where="backward")] if outcome else []
    failures = []
    ref_grads = ref.grads or {}
    for name, ge in (eager.grads or {}).items():
        gc, where = (compiled.grads or {}).get(name), f"grad-{name}"
        if (ge is None) != (gc is None):
            failures.append(Failure("structure", where, "none", f"{where}: eager "
                            f"{'has no' if ge is None else 'has a'} gradient, compiled "
                            f"{'has no' if gc is None else 'has a'} gradient"))
        elif ge is not None:
            # A gradient's layout is the autograd engine's choice, not the program's: eager
            # SDPA's own backward returns non-contiguous gradients, AOTAutograd others.
            factor = fudge(_dtype(ge), eager.kernels, gradient=True)
            fails, m = compare_tensor(where, ge, gc, ref_grads.get(name), numeric, kappa,
                                      precision, strides=False, terms=terms.get(name, 0.0),
                                      factor=factor)
            failures += fails
            if m is not None:
                ratios.append((f"{where}:{_dtype(ge)}", m.ratio))
    return failures


def _check_frames(case: Case, run: CaseRun, checked: set[str]) -> list[Failure]:
    """First call: the frame model's count. A later call from a context already seen, and
    the repeat of the first call: nothing new. A reused compiled function: nothing at all."""
    if run.compiled[0].error is not None:
        return []
    checked.add("recompile")
    failures = []
    frames = run.frames
    try:
        expected = 0 if frames.reused else predict_frames(case.program, dict(case.inputs),
                                                          case.compile.dynamic)
    except ValueError:
        expected = None  # a construct the model has no rule for: never generated
    if expected is not None:
        checked.add("frames")
    if expected is not None and frames.per_call[0] != expected:
        failures.append(Failure("frames", "first-call", f"expected-{expected}",
                        f"the counting backend compiled {frames.per_call[0]} graph(s) on the "
                        f"first call; the frame model predicts {expected}"
                        + (" (warm from an equal case)" if frames.reused else "")))
    sized = None if frames.reused else size_recompiles(case)
    if sized is not None:  # calls of other sequence lengths: the dynamic-shape rules
        checked.add("recompile")
        mode = {True: "dynamic", False: "static", None: "automatic"}[case.compile.dynamic]
        for i, (got, want) in enumerate(zip(frames.per_call[1:], sized[1:]), start=1):
            if got not in want and run.compiled[i].error is None:
                failures.append(Failure("recompile", "call", f"size-{mode}",
                                f"call {i} (lengths +{case.calls[i].grow}, dynamic={case.compile.dynamic}) "
                                f"compiled {got} graph(s); the dynamic-shape rules allow "
                                f"{' or '.join(map(str, sorted(want)))}",
                                i))
    for i, context in enumerate(case.calls[1:], start=1):
        if sized is not None:
            break
        seen = context.kernel in [c.kernel for c in case.calls[:i]]
        if seen and frames.per_call[i] and run.compiled[i].error is None:
            failures.append(Failure("recompile", "call", "same-context",
                            f"call {i} repeats an earlier call's context with inputs of equal "
                            f"shapes but compiled {frames.per_call[i]} more graph(s)", i))
    if frames.repeat:
        failures.append(Failure("recompile", "repeat", "equal-inputs",
                        f"repeating the first call with equal inputs compiled {frames.repeat} "
                        "more graph(s)"))
    return failures


def _site(case: Case, leaf_name: str) -> str:
    """Where a leaf comes from, stably across programs: the kind of statement that made
    the returned value (`attention`, `read_backends`, ...) or `input`, not its name, so
    that one bug seen through differently named values has one signature."""
    name = leaf_name.split("[")[0]
    if name in case.input_names:
        return "input"
    origin = {s.out: op for s in walk(case.program.body) if getattr(s, "out", None)
              for op, cls in STATEMENTS.items() if type(s) is cls}
    return origin.get(name, name)


def _leaf_name(case: Case, obs: Observation, i: int) -> str:
    """The returned name a leaf comes from, with its index inside it: `out`, `backends2[1]`."""
    returns = case.program.returns
    assert obs.paths is not None
    path = obs.paths[i]
    if len(returns) > 1:
        name, path = returns[path[0]], path[1:]
    else:
        name = returns[0]
    return name + "".join(f"[{k}]" for k in path)


def _compare_leaf(where: str, eager: Observation, compiled: Observation, e: Any, c: Any,
                  r: Any, numeric: bool, ratios: list[tuple[str, float]], kappa: float,
                  precision: str | None, ops: int) -> list[Failure]:
    if type(e) is not type(c):
        return [Failure("structure", where, "type", f"{where}: eager returned a "
                        f"{type(e).__name__}, compiled a {type(c).__name__}")]
    if isinstance(e, torch.Tensor):
        fails, m = compare_tensor(where, e, c, r, numeric, kappa, precision, exact_ops=ops)
        if m is not None:
            ratios.append((_dtype(e), m.ratio))
        return fails
    if isinstance(e, SDPAParams):
        return _compare_params(where, eager, compiled, e, c, r, numeric, kappa, precision,
                               ops)
    if e != c:
        return [Failure("values", where, type(e).__name__,
                        f"{where}: eager returned {e!r}, compiled {c!r}")]
    return []


def _compare_params(where: str, eager: Observation, compiled: Observation, e: Any, c: Any,
                    r: Any, numeric: bool, kappa: float, precision: str | None,
                    ops: int) -> list[Failure]:
    """An SDPAParams's tensor fields are the very objects eager's are (mapped to each run's
    own inputs), or equal tensors where eager's are not inputs; other fields are equal."""
    failures = []
    for attr in ("query", "key", "value", "attn_mask"):
        fe, fc = getattr(e, attr), getattr(c, attr)
        failures += _check_identity(f"{where}.{attr}", eager, compiled, fe, fc)
        if isinstance(fe, torch.Tensor) and isinstance(fc, torch.Tensor):
            fr = getattr(r, attr, None) if r is not None else None
            failures += compare_tensor(f"{where}.{attr}", fe, fc, fr, numeric, kappa,
                                       precision, exact_ops=ops)[0]
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
    return [Failure("identity", where, f"returns-{name_e or 'new'}",
                    f"{where}: eager returns {f'input {name_e} itself' if name_e else 'a new object'}"
                    f", compiled returns {f'input {name_c} itself' if name_c else 'a new object'}")]
