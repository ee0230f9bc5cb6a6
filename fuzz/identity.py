"""Bug identity: which failures are one bug.

A failure's *key* (`fuzz.check.Failure.key`) says what diverged and where (check, site,
and for checks that are not about numbers, how: the exception, the leaked state). The dtype, the rewrite pattern and
the seed are left out: they are symptoms, and one bug shows under many. A case's
*features* are what it still has beyond the plainest program: statement kinds, SDPA knobs,
non-canonical details of hand-written attention, dtypes, layouts, compile settings.

Shrinking removes every feature a failure does not need, so two shrunk cases of one bug
share their features, and two bugs rarely do. An identity is a key with the features of
a shrunk case; it *covers* a failing case with the same key whose features include the
identity's: a case that shrinking could take to that very identity. Covering is decided
per case, so it can be the property Hypothesis shrinks against: removing features never
turns an uncovered failure into a covered one, and a new bug whose shrunk form lacks a
feature of a known one is never hidden by it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from fuzz.case import (AUTOCASTS, FLOAT_DTYPES, GRAD_MODES, HAND_CHOICES, MASK_DTYPES,
                       MASK_VALUE_KINDS, MODEL_CHOICES, MODULE_CHOICES, MUTATIONS, VALUE_KINDS,
                       Attention, BuildParams, Case, CaseError, GraphBreak, HandAttention,
                       KernelBlock,
                       ModelAttention, ModuleCall, ModuleInput, Mutate, ParamsAttr,
                       ParamsInput, ReadBackends, STATEMENTS, SetFlag, TensorSpec,
                       grow_dims, hidden_input, reseed, walk)
from fuzz.materialize import build_tensor, grown

# The layers a bug can live in, and the layers each registered backend runs through. A
# Dynamo bug holds for every backend, an AOTAutograd bug for those that trace with it,
# an Inductor bug for Inductor alone.
LAYERS = ("dynamo", "aot", "inductor")
BACKEND_LAYERS = {"eager": ("dynamo",), "aot_eager": ("dynamo", "aot"),
                  "aot_eager_decomp_partition": ("dynamo", "aot"),
                  "inductor": ("dynamo", "aot", "inductor")}


def backend_layers(backend: str, declared: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The layers `backend` runs through: a registered name's, what a callable declares
    (its `sdpa_fuzz_layers` attribute, see `declared`), else Dynamo's alone, so that a
    custom backend is never excused by a bug it may not share."""
    if backend in BACKEND_LAYERS:
        return BACKEND_LAYERS[backend]
    return tuple(declared) if declared else ("dynamo",)


ALTERNATIVE = "|"  # between the settings of one knob at which a bug was seen alike


@dataclass(frozen=True)
class Identity:
    """A bug: the key of its failure and the features its shrunk case needs."""

    key: str
    features: frozenset[str]

    def covers(self, key: str, features: frozenset[str]) -> bool:
        """Whether a failure of `key` on a case with `features` is this bug: the case has
        each of the identity's features, or one of its alternatives (`a|b`)."""
        return key == self.key and all(any(alt in features for alt in f.split(ALTERNATIVE))
                                       for f in self.features)

    @property
    def name(self) -> str:
        return self.key + ("{" + ",".join(sorted(self.features)) + "}")


def _scale_class(scale: float | None) -> str:
    if scale is None:
        return "default"
    if not math.isfinite(scale):
        return "nonfinite"
    if scale == 0:
        return "zero"
    return ("negative-" if scale < 0 else "") + ("large" if abs(scale) > 4 else "plain")


def _masks_a_whole_row(name: str, spec: TensorSpec, case: Case) -> bool:
    """Whether a mask drawn at random leaves some query row nothing to attend to, in the
    inputs of some call: what a `full_rows` mask guarantees, a random one may draw (a
    small one often does), and a bug of fully masked rows needs it either way. A module's
    `padding` mask masks where it is True (or -inf), as torch.nn's masks do."""
    if spec.values not in ("random", "padding") or len(spec.shape) < 2:
        return False
    marks = grow_dims(case).get(name, ())
    for call in case.calls:
        shape = grown(spec.shape, marks, call.grow) if any(marks) else spec.shape
        mask = build_tensor(shape, spec.dtype, spec.values, spec.layout,
                            reseed(spec.seed, call.reseed), spec.perm, spec.expand_dim)
        masked = mask == float("-inf") if mask.is_floating_point() else \
            mask != 0 if spec.values == "padding" else mask == 0
        if mask.numel() and bool(masked.all(-1).any()):
            return True
    return False


def _tensor_features(name: str, spec: TensorSpec, role: str, case: Case) -> set[str]:
    """A mask's rank is a feature (broadcasting is where mask bugs live); an operand's is
    not, since a valid call needs every operand's rank alike, and which of several ranks
    a shrunk case keeps is the shrinker's whim. Query, key and value share one role: a
    valid call needs their dtypes alike too."""
    found = {f"mask:rank{len(spec.shape)}"} if role == "mask" else set()
    role = "qkv" if role in ("query", "key", "value") else role
    if spec.dtype != "float32":
        found.add(f"{role}:dtype={spec.dtype}")
    if spec.values not in ("normal", "random"):
        found.add(f"{role}:values={spec.values}")
    elif role == "mask" and _masks_a_whole_row(name, spec, case):
        found.add("mask:values=full_rows")
    if spec.layout != "contiguous":
        found.add(f"{role}:layout={spec.layout}")
    if spec.requires_grad:
        found.add(f"{role}:requires_grad")
    return found


def _attention_features(a: Attention, case: Case) -> set[str]:
    found = {"sdpa"}
    specs = {n: s for n, s in case.inputs if isinstance(s, TensorSpec)}
    q, k = specs.get(a.query), specs.get(a.key)
    if a.mask is not None:
        m = specs.get(a.mask)
        found.add("sdpa:mask" + (f":rank{len(m.shape)}" if m else ":computed"))
        if m is not None and q is not None and m.shape[-2:] != (q.shape[-2], m.shape[-1]):
            found.add("sdpa:mask:broadcast")
        if m is not None and q is not None and k is not None \
                and len(m.shape) > max(len(q.shape), len(k.shape)):
            found.add("sdpa:mask:rank-over")
    if a.dropout_p:
        found.add("sdpa:dropout" + ("" if 0 < a.dropout_p < 1 else "=invalid"))
    if a.is_causal:
        found.add("sdpa:causal")
    if a.scale is not None:
        found.add(f"sdpa:scale={_scale_class(a.scale)}")
    if a.enable_gqa:
        found.add("sdpa:gqa")
    # One query row is the plainest call (what seq_lens() shrinks to), so a longer query
    # is the feature; a bug that needs no particular length keeps an identity that
    # covers every length, even where shrinking stops short of one row.
    if q is not None and len(q.shape) >= 2 and q.shape[-2] > 1:
        found.add("sdpa:L>1")
    if q is not None and k is not None and len(q.shape) >= 2 and len(k.shape) >= 2 \
            and q.shape[-2] != k.shape[-2]:
        found.add("sdpa:L!=S")
    if len({a.query, a.key, a.value}) < 3:
        found.add("sdpa:shared-inputs")
    return found


def _model_features(a: ModelAttention, case: Case) -> set[str]:
    """The layer's forms (`model:split=chunk`), and its SDPA call's knobs as an SDPA
    call's own (`sdpa:causal`), so that a bug of the call is one bug however fed."""
    found = {"model", "sdpa"}
    if a.weights:
        found.add("model:projection=" + ("separate" if len(a.weights) == 3 else "fused"))
    for deviation in a.deviations():
        field_name, _, value = deviation.partition("=")
        if field_name in ("project", "split", "head_op", "gqa", "merge"):
            found.add(f"model:{field_name}={value.strip(chr(39))}")
        elif field_name in ("rotary", "cache", "out_proj"):
            found.add(f"model:{field_name}")
    if a.mask is not None:
        found.add("sdpa:mask")
    if a.dropout_p:
        found.add("sdpa:dropout")
    if a.is_causal:
        found.add("sdpa:causal")
    if a.scale is not None:
        found.add(f"sdpa:scale={_scale_class(a.scale)}")
    if a.gqa != "none":
        found.add("sdpa:gqa")
    x = hidden_input(case, a)
    if x is not None and len(x.shape) >= 2 and x.shape[1] > 1:
        found.add("sdpa:L>1")
    if a.x not in dict(case.inputs):
        found.add("model:stacked")
    if a.cache:
        found.add("sdpa:L!=S")
    if not a.weights:
        found.add("sdpa:shared-inputs")
    return found


def _module_features(c: ModuleCall, case: Case) -> set[str]:
    """The module's kind and each of its and its call's knobs away from the default
    (`module:batch_first`, `module:key_padding_mask`), `sdpa` where it calls SDPA."""
    m = case.spec(c.module)
    assert isinstance(m, ModuleInput)
    found = {"module", f"module:kind={m.module}"} | ({"sdpa"} if not c.need_weights else set())
    knobs = (("batch_first", m.batch_first), ("no-bias", not m.bias),
             ("add_bias_kv", m.add_bias_kv), ("kdim", m.kdim is not None or m.vdim is not None),
             ("norm_first", m.norm_first), ("activation=gelu", m.activation == "gelu"),
             ("training", m.training), ("cross", c.key is not None),
             ("key_padding_mask", c.key_padding_mask is not None),
             ("attn_mask", c.attn_mask is not None), ("causal", c.is_causal),
             ("need_weights", c.need_weights),
             ("per-head-weights", c.need_weights and not c.average_attn_weights))
    return found | {f"module:{name}" for name, on in knobs if on}


# Fields of hand-written attention whose value is continuous: whether it deviates is the
# feature, not the value itself.
_CONTINUOUS = {"scale", "dropout_p", "heads", "causal_diagonal", "window", "perm", "key_perm",
               "softmax_dim", "fill"}


def _statement_features(stmt: object, case: Case) -> set[str]:
    if isinstance(stmt, Attention):
        return _attention_features(stmt, case)
    if isinstance(stmt, HandAttention):
        found = {"hand"}
        for deviation in stmt.deviations():
            field_name, _, value = deviation.partition("=")
            found.add(f"hand:{field_name}" if field_name in _CONTINUOUS
                      else f"hand:{field_name}={value}")
        return found
    if isinstance(stmt, ModelAttention):
        return _model_features(stmt, case)
    if isinstance(stmt, ModuleCall):
        return _module_features(stmt, case)
    if isinstance(stmt, Mutate):
        return {f"mutate:{stmt.method}"}
    if isinstance(stmt, BuildParams):
        return {"params"} | ({"params:mask"} if stmt.mask else set()) | (
            {"params:causal"} if stmt.is_causal else set())
    if isinstance(stmt, ParamsAttr):
        return {f"params-attr:{stmt.attr}"}
    if isinstance(stmt, GraphBreak):
        return {f"break:{stmt.place}"}
    if isinstance(stmt, ReadBackends):
        return {"read-backends" + (":priority" if stmt.with_priority else "")}
    if isinstance(stmt, SetFlag):
        return {f"set-flag:{'on' if stmt.enabled else 'off'}"}
    if isinstance(stmt, KernelBlock):
        return {f"kernel-block:{stmt.style}"} | ({"kernel-block:priority"} if stmt.set_priority
                                                 else set())
    # A kind with no rule of its own is a feature by its op name: a new statement kind has
    # an identity without a change here, and a rule only where its options matter.
    return {next(op for op, cls in STATEMENTS.items() if cls is type(stmt)).replace("_", "-")}


def _with_parents(found: set[str]) -> frozenset[str]:
    """Each feature with the coarser ones it refines (`calls:context:priority` has
    `calls:context` and `calls`, `qkv:dtype=float16` has `qkv:dtype`), so that an identity
    triaged down to the coarse feature covers every refinement of it."""
    closed = set(found)
    for feature in found:
        for i, char in enumerate(feature):
            if char in ":=":
                closed.add(feature[:i])
    return frozenset(closed)


def _roles(case: Case) -> dict[str, str]:
    """Each input an attention reads, by its first role: query, key, value or mask."""
    roles: dict[str, str] = {}
    for stmt in walk(case.program.body):
        for field_name in ("query", "key", "value", "mask", "key_padding_mask", "attn_mask"):
            name = getattr(stmt, field_name, None)
            if isinstance(name, str):
                roles.setdefault(name, "mask" if "mask" in field_name else field_name)
    return roles


def features(case: Case) -> frozenset[str]:
    """What the case has beyond the plainest program of one SDPA call on float32 inputs,
    each with the coarser features it refines."""
    found: set[str] = set()
    for stmt in walk(case.program.body):
        found |= _statement_features(stmt, case)
    roles = _roles(case)
    for name, spec in case.inputs:
        if isinstance(spec, TensorSpec):
            found |= _tensor_features(name, spec, roles.get(name, "input"), case)
        elif isinstance(spec, ParamsInput):
            found.add("params-input")
    settings = case.compile
    if settings.fullgraph:
        found.add("fullgraph")
    if settings.dynamic is not None:
        found.add(f"dynamic={settings.dynamic}")
    if settings.mode not in (None, "default"):
        found.add(f"mode={settings.mode}")
    if settings.mark_dynamic:
        found.add("mark-dynamic")
    if settings.freezing:
        found.add("freezing")
    if case.device != "cpu":
        found.add(f"device={case.device}")
    if case.backward:
        found.add("backward")
    if len(case.calls) > 1:
        found.add("calls:several")
    for call in case.calls:
        if call.backends is not None:
            found.add("calls:context" + (":priority" if call.set_priority else ""))
        if call.reseed:
            found.add("calls:reseed")
        if call.grow:
            found.add("calls:grow")
        if call.grad_mode != "default":
            found.add(f"calls:grad={call.grad_mode}")
        if call.autocast is not None:
            found.add(f"calls:autocast={call.autocast}")
    if len(case.program.returns) > 1:
        found.add("returns:several")
    return _with_parents(found)


# Probing: how far a shrunk case's knobs can move with the bug still there.

@dataclass(frozen=True)
class Knob:
    """A setting of a case away from its plain one: the case with it plain (None where
    that is no valid case), and with each other valid setting."""

    plain: Case | None
    others: tuple[Case, ...]


def _valid(make: Callable[[], Case]) -> Case | None:
    try:
        return make()
    except CaseError:
        return None


_NO_PLAIN = object()  # a knob every setting of which is a feature (a mask's rank)


def _knob(current: object, plain: object, domain: tuple, make: Callable[[object], Case]
          ) -> Knob:
    others = (_valid(lambda: make(v)) for v in domain if v not in (current, plain))
    return Knob(None if plain is _NO_PLAIN else _valid(lambda: make(plain)),
                tuple(c for c in others if c is not None))


def _with_statement(case: Case, old: object, new: object) -> Case:
    def swap(body: tuple) -> tuple:
        return tuple(new if s is old else replace(s, body=swap(s.body))
                     if isinstance(s, KernelBlock) else s for s in body)
    return replace(case, program=replace(case.program, body=swap(case.program.body)))


def _tensor_knobs(case: Case) -> list[Knob]:
    """The dtype and the values of each group of inputs whose dtype is one feature
    (`qkv:dtype=`, the mask's, the other inputs'), where the group shares one setting
    other than the plain one; and each mask's rank, which has no plain setting."""
    roles, groups = _roles(case), {}
    for name, spec in case.inputs:
        if isinstance(spec, TensorSpec):
            role = roles.get(name, "input")
            groups.setdefault("qkv" if role in ("query", "key", "value") else role,
                              []).append(name)
    knobs = []
    for group, names in groups.items():
        mask = group == "mask"
        for field_name, plain, domain in (
                ("dtype", "float32", MASK_DTYPES if mask else FLOAT_DTYPES),
                ("values", "random" if mask else "normal",
                 MASK_VALUE_KINDS if mask else VALUE_KINDS)):
            now = {getattr(case.spec(n), field_name) for n in names}
            if len(now) != 1 or now == {plain}:
                continue

            def make(v: object, names: list[str] = names, field_name: str = field_name) -> Case:
                return replace(case, inputs=tuple(
                    (n, replace(s, **{field_name: v}) if n in names else s)
                    for n, s in case.inputs))
            knobs.append(_knob(now.pop(), plain, domain, make))
    for name in groups.get("mask", ()):
        shape = case.spec(name).shape
        if len(shape) >= 2:  # its rank, as broadcasting leading dims of 1 make it
            knobs.append(_knob(len(shape), _NO_PLAIN, (2, 3, 4), lambda rank, name=name: replace(
                case, inputs=tuple((n, replace(s, shape=(1,) * (rank - 2) + shape[-2:])
                                    if n == name else s) for n, s in case.inputs))))
    return knobs


def knobs(case: Case) -> list[Knob]:
    """The case's settings that take one of a few values and are away from the plain
    one: input dtypes and value kinds, a mask's rank, the choices of hand-written and
    model attention, a mutation's method, a module's options, `dynamic`, and each call's
    grad mode and autocast."""
    found = _tensor_knobs(case)
    for stmt in walk(case.program.body):
        # A mutation's method is a feature whichever it is: it has no plain setting.
        choices = {HandAttention: HAND_CHOICES, ModelAttention: MODEL_CHOICES,
                   Mutate: {"method": MUTATIONS}}.get(type(stmt))
        if choices is None:
            continue
        for name, domain in choices.items():
            plain = _NO_PLAIN if isinstance(stmt, Mutate) else \
                type(stmt).__dataclass_fields__[name].default
            if getattr(stmt, name) != plain:
                found.append(_knob(getattr(stmt, name), plain, domain, lambda v, name=name,
                                   stmt=stmt: _with_statement(case, stmt,
                                                              replace(stmt, **{name: v}))))
    for name, spec in case.inputs:
        if not isinstance(spec, ModuleInput):
            continue
        for field_name, domain in MODULE_CHOICES.items():
            plain = ModuleInput.__dataclass_fields__[field_name].default
            if getattr(spec, field_name) != plain:
                found.append(_knob(getattr(spec, field_name), plain, domain, lambda v, name=name,
                                   field_name=field_name: replace(case, inputs=tuple(
                                       (n, replace(s, **{field_name: v}) if n == name else s)
                                       for n, s in case.inputs))))
    if case.compile.dynamic is not None:
        found.append(_knob(case.compile.dynamic, None, (False, True), lambda v: replace(
            case, compile=replace(case.compile, dynamic=v))))
    for i, call in enumerate(case.calls):
        for name, plain, domain in (("grad_mode", "default", GRAD_MODES),
                                    ("autocast", None, AUTOCASTS)):
            if getattr(call, name) != plain:
                found.append(_knob(getattr(call, name), plain, domain, lambda v, i=i,
                                   name=name: replace(case, calls=tuple(
                                       replace(c, **{name: v}) if j == i else c
                                       for j, c in enumerate(case.calls)))))
    return found


def _leaves(found: frozenset[str]) -> set[str]:
    """The features of `found` that no other of them refines."""
    return {f for f in found if not any(g != f and g.startswith(f) and g[len(f)] in ":="
                                        for g in found)}


Evidence = TypeVar("Evidence")


def probed(case: Case, evidence: Evidence, key: str,
           alike: Callable[[Case], Evidence | None], probes: int
           ) -> tuple[Case, Evidence, Identity]:
    """A shrunk failure's case and identity, after probing its knobs (at most `probes`
    cases, each judged by `alike`: the evidence that it fails with `key`, or None).

    A knob whose plain setting fails alike is set plain: shrinking works on Hypothesis's
    choices, not on the case, and stops short of some. A knob whose other settings fail
    alike gets them as alternatives, so that one bug seen in float16 and in bfloat16, or
    with a scale from a Python float and from a tensor, is one identity; and where such
    a setting lets another knob go plain (a size-computed scale that needs
    `dynamic=True` where a Python float needs nothing), the plainer case is the one kept.
    """
    left, seen = probes, {}

    def fails(other: Case) -> Evidence | None:
        nonlocal left
        if other in seen or left <= 0:
            return seen.get(other)
        left -= 1
        shown = seen[other] = alike(other)
        return shown  # not read back: a case with a NaN scale is not equal to itself

    def plainest(case: Case, evidence: Evidence) -> tuple[Case, Evidence]:
        for knob in knobs(case):
            shown = fails(knob.plain) if knob.plain is not None else None
            if shown is not None:
                return plainest(knob.plain, shown)
        return case, evidence

    def size(c: Case) -> int:
        return len(_leaves(features(c)))

    case, evidence = plainest(case, evidence)
    groups: dict[str, frozenset[str]] = {}
    moved_on = True
    while moved_on and left > 0:
        moved_on = False
        base = features(case)
        for other in (o for knob in knobs(case) for o in knob.others):
            shown = fails(other)
            if shown is None:
                continue
            moved = features(other)
            for a in _leaves(base - moved):
                for b in _leaves(moved - base):
                    group = groups.get(a, frozenset({a})) | groups.get(b, frozenset({b}))
                    groups.update(dict.fromkeys(group, group))
            plainer, plainer_evidence = plainest(other, shown)
            if size(plainer) < size(case):
                case, evidence, moved_on = plainer, plainer_evidence, True
                break
    found = frozenset(ALTERNATIVE.join(sorted(groups[f])) if f in groups else f
                      for f in features(case))
    return case, evidence, Identity(key, found)
