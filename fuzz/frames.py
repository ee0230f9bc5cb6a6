"""The frame model: how many graphs Dynamo hands the backend on a program's first call.

A pure function of the program. Its rules, and the Dynamo behaviour behind each, are in
docs/oracle.md; tests/test_frames.py pins every rule to a program observed on torch 2.13.

The program is read as a sequence of steps in execution order, each with an event, `OP`
(puts at least one node in the graph), `BREAK` (ends the graph) or `SKIP` (see rule 2),
and the names it reads:

1. Each maximal run of events between breaks is one graph if it holds an OP, none if not:
   Dynamo does not call the backend for a graph with no calls in it.
2. Some breaks make Dynamo skip the frame they are in (a SKIP): no graph from the last
   earlier break to the end of the function (after a break, the rest of the function is
   a resume function, a frame of its own); graphs closed before stand. Two do: a break
   inside a `for` loop, and a second break inside an `sdpa_kernel` block that Dynamo has
   already resumed once after a break (in the resume function it cannot resume the
   context again).
3. A break inside a helper function (one or two calls deep) splits the caller's graph at
   the call; the helpers' own frames add graphs only for ops in them, and ours have none.
   Where a frame runs eagerly (rules 2 and 7), the functions it calls are still frames
   Dynamo compiles: each call of an `@sdpa_kernel`-decorated helper there is one graph.
4. `sdpa_kernel` is traced: entering and leaving it each put a node in the graph, and a
   break inside it is resumed inside the context, so both sides of the break hold an OP.
   Used as a decorator without a break inside, it is the same. A break inside a decorated
   function has no rule (observed: 3 graphs for op-break-op, not explained), so the
   strategies never generate one.
5. `_cur_sdpa_kernel_backends()` is traced (OP); with `with_priority=True` it reads
   `torch._C._get_sdp_priority_order`, which Dynamo cannot trace (BREAK). The
   `torch.backends.cuda.*_sdp_enabled()` getters break the graph; the `enable_*_sdp` setters
   are traced (OP).
6. Building an SDPAParams (allowed in graph) is a node, and so is reading an attribute of
   one: Dynamo's SDPAParamsVariable turns the read into a `getattr` node on the params
   proxy (and an input SDPAParams is itself rebuilt in the graph when first read). An
   input SDPAParams returned among other values passes through untouched. An SDPAParams
   returned as the only value has no rule (observed: an input one is rebuilt in a graph
   after `graph_break()` but not after the priority read, and a built one carried across
   a break is rebuilt), so the strategies never generate it.
7. After a break the rest of the function is a resume function, and Dynamo compiles a
   frame only if a tensor is among its arguments or its code names a torch module
   (`has_tensor_in_frame`). A resume function's arguments are the values live at the
   break (read later, defined before); its code is the original function's, so it names
   `torch` where any statement of `fn` does (`F.` is `torch.nn.functional`). When neither
   holds, the rest of the function runs eagerly: no more graphs.
8. A torch.nn module call (`ModuleCall`) is traced whole, its forward inlined (OP), except
   where its key padding mask and attention mask differ in dtype: `F._canonical_mask`
   then warns that mismatched masks are deprecated, Dynamo cannot trace `warnings.warn`,
   and the break lands inside torch.nn's code, whose frames Dynamo does not compile on
   their own: the call runs eagerly (a BREAK that adds no graph of its own).
9. No rule for an SDPAParams input under `dynamic=True`: its float `dropout` becomes a
   symbolic float, AOTAutograd's `_tensorify_python_scalars` pass rejects it and Dynamo
   restarts the analysis with it specialised, so an AOTAutograd-based backend is called
   twice for the frame (once with a graph it throws away) and a plain one once. The
   count depends on what the backend is made of, which a `module:attr` backend does not
   say, so the strategies never draw this combination. (The graphs are now counted as
   the backend accepts them, `fuzz.calls.AcceptedGraphCounter`, which may make this
   combination predictable; not re-measured.)
"""

from __future__ import annotations

from dataclasses import dataclass

from fuzz.case import (Attention, BuildParams, GraphBreak, HandAttention, KernelBlock,
                       ModelAttention, ModuleCall, ModuleInput, Mutate, ParamsAttr, ParamsInput,
                       Program, ReadBackends, ReadFlag, SetFlag, Shift, Statement, TensorSpec,
                       walk)
from fuzz.handwritten import hand_attention_lines

OP, BREAK, SKIP = "op", "break", "skip"
TENSOR_ATTRS = ("query", "key", "value")


@dataclass(frozen=True)
class Step:
    event: str | None  # OP, BREAK, SKIP, or None for a step that adds nothing
    reads: frozenset[str] = frozenset()
    defines: str | None = None
    own_frame: bool = False  # a call of a function Dynamo compiles when run eagerly


def _reads(stmt: Statement) -> frozenset[str]:
    names = {
        Attention: lambda s: (s.query, s.key, s.value, s.mask),
        HandAttention: lambda s: (s.query, s.key, s.value, s.mask),
        ModelAttention: lambda s: (s.x, s.mask, s.out_proj, *s.weights, *s.rotary, *s.cache),
        ModuleCall: lambda s: (s.module, s.query, s.key, s.value, s.key_padding_mask,
                               s.attn_mask),
        BuildParams: lambda s: (s.query, s.key, s.value, s.mask),
        Mutate: lambda s: (s.target,),
        ParamsAttr: lambda s: (s.params,),
        Shift: lambda s: (s.source,),
    }.get(type(stmt), lambda s: ())(stmt)
    return frozenset(n for n in names if n is not None)


def _names_torch(stmt: Statement) -> bool:
    """Whether the statement's line in `fn` names a torch module (`torch.`, or `F.`)."""
    if isinstance(stmt, HandAttention):
        return any("torch." in line or "F." in line for line in hand_attention_lines(stmt, 1))
    return isinstance(stmt, (Attention, ModelAttention, ReadFlag, SetFlag)) or (
        isinstance(stmt, GraphBreak) and stmt.place in ("top", "loop"))


class _Walker:
    """Flattens a program into steps, tracking rule 2's resumed blocks."""

    def __init__(self, inputs: tuple[str, ...], dtypes: dict[str, str] | None = None) -> None:
        self.dtypes = dtypes or {}  # input name -> dtype, for rule 8
        self.steps: list[Step] = []
        self.blocks: list[bool] = []  # per open sdpa_kernel block: resumed after a break?
        self.defined = list(inputs)
        self.names_torch = False

    def breaking(self, in_loop: bool = False) -> str:
        if in_loop or any(self.blocks):
            return SKIP
        self.blocks[:] = [True] * len(self.blocks)
        return BREAK

    def body(self, body: tuple[Statement, ...]) -> None:
        for stmt in body:
            self.names_torch |= _names_torch(stmt)
            out = getattr(stmt, "out", None)
            if isinstance(stmt, KernelBlock):
                self.block(stmt)
                continue
            if isinstance(stmt, (Attention, HandAttention, ModelAttention, Mutate, BuildParams,
                                 ParamsAttr, Shift, SetFlag)):
                event = OP
            elif isinstance(stmt, ModuleCall):
                masks = [self.dtypes.get(m) for m in (stmt.key_padding_mask, stmt.attn_mask)]
                event = self.breaking() if None not in masks and masks[0] != masks[1] else OP
            elif isinstance(stmt, GraphBreak):
                event = self.breaking(in_loop=stmt.place == "loop")
            elif isinstance(stmt, ReadBackends):
                event = self.breaking() if stmt.with_priority else OP
            elif isinstance(stmt, ReadFlag):
                event = self.breaking()
            else:
                raise TypeError(f"the frame model has no rule for {type(stmt).__name__}")
            self.steps.append(Step(event, _reads(stmt), out))
            if out:
                self.defined.append(out)

    def block(self, stmt: KernelBlock) -> None:
        if stmt.style == "decorator":
            inner = _Walker(())
            inner.body(stmt.body)
            if any(s.event not in (OP, None) for s in inner.steps):
                raise ValueError("the frame model has no rule for a graph break inside an "
                                 "@sdpa_kernel-decorated function")
            made = [s.defines for s in inner.steps if s.defines]
            # fn calls the decorated helper with every name defined so far.
            self.steps.append(Step(OP, frozenset(self.defined), own_frame=True))
            self.steps += [Step(None, frozenset(), name) for name in made]
            self.defined += made
            return
        self.steps.append(Step(OP))
        self.blocks.append(False)
        self.body(stmt.body)
        self.blocks.pop()
        self.steps.append(Step(OP))


def steps(program: Program, inputs: tuple[str, ...] = (), dtypes: dict[str, str] | None = None
          ) -> tuple[list[Step], bool]:
    """The program's steps, then a last step that reads what it returns; and whether `fn`
    names a torch module (rule 7)."""
    walker = _Walker(inputs, dtypes)
    walker.body(program.body)
    return walker.steps + [Step(None, frozenset(program.returns))], walker.names_torch


def events(body: tuple[Statement, ...], dtypes: dict[str, str] | None = None) -> list[str]:
    walker = _Walker((), dtypes)
    walker.body(body)
    return [s.event for s in walker.steps if s.event is not None]


def params_names(program: Program, params_inputs: frozenset[str]) -> set[str]:
    """Every name that holds an SDPAParams: the inputs, and those built in the program."""
    return set(params_inputs) | {s.out for s in walk(program.body) if isinstance(s, BuildParams)}


def tensor_names(program: Program, inputs: dict) -> set[str]:
    """Names that hold a tensor: tensor inputs, and what attention, shifts and tensor
    attribute reads of an SDPAParams (or its mask, where it has one) produce."""
    masks = {n: spec.mask for n, spec in inputs.items() if isinstance(spec, ParamsInput)}
    masks.update({s.out: s.mask for s in walk(program.body) if isinstance(s, BuildParams)})
    names = {n for n, spec in inputs.items() if not isinstance(spec, (ParamsInput, ModuleInput))}
    for s in walk(program.body):
        if isinstance(s, (Attention, HandAttention, ModelAttention, ModuleCall, Shift)):
            names.add(s.out)
            if isinstance(s, ModuleCall) and s.weights_out:
                names.add(s.weights_out)
        elif isinstance(s, ParamsAttr) and (s.attr in TENSOR_ATTRS or (
                s.attr == "attn_mask" and masks.get(s.params) is not None)):
            names.add(s.out)
    return names


def input_dtypes(inputs: dict) -> dict[str, str]:
    """Input name -> dtype, for the tensor inputs among `inputs` (name -> spec)."""
    return {n: s.dtype for n, s in inputs.items() if isinstance(s, TensorSpec)}


def must_break(program: Program, inputs: dict | None = None) -> bool:
    """Whether Dynamo must break the graph, so that `fullgraph=True` must raise."""
    return any(e != OP for e in events(program.body, input_dtypes(inputs or {})))


def predict_frames(program: Program, inputs: dict | None = None,
                   dynamic: bool | None = None) -> int:
    """Graphs compiled by the first call. `inputs` maps input names to their specs;
    `dynamic` is the `torch.compile` setting."""
    inputs = inputs or {}
    params_inputs = frozenset(n for n, s in inputs.items() if isinstance(s, ParamsInput))
    if dynamic is True and params_inputs:
        raise ValueError("the frame model has no rule for an SDPAParams input under "
                         "dynamic=True")
    alone = program.returns[0] if len(program.returns) == 1 else None
    if alone in params_inputs or (alone in params_names(program, params_inputs)
                                  and must_break(program, inputs)):
        raise ValueError("the frame model has no rule for returning an SDPAParams alone")
    seq, names_torch = steps(program, tuple(inputs), input_dtypes(inputs))
    tensors = tensor_names(program, inputs)
    graphs, has_op, defined = 0, False, set(inputs)
    for i, step in enumerate(seq):
        if step.event == OP:
            has_op = True
        elif step.event == SKIP:
            # rule 2: the frame this segment belongs to runs eagerly from its start
            start = max((j for j in range(i) if seq[j].event == BREAK), default=-1)
            return graphs + _own_frames(seq[start + 1:])
        elif step.event == BREAK:
            graphs, has_op = graphs + has_op, False
            live = set().union(*(s.reads for s in seq[i + 1:])) & defined
            if not names_torch and not live & tensors:
                return graphs + _own_frames(seq[i + 1:])  # rule 7: resume runs eagerly
        if step.defines:
            defined.add(step.defines)
    return graphs + has_op


def _own_frames(rest: list[Step]) -> int:
    """Rule 3 in code that runs eagerly: each call of an `@sdpa_kernel`-decorated helper
    is a frame Dynamo compiles on its own, and its body always holds an OP."""
    return sum(s.own_frame for s in rest)


def _passes(guards: tuple, sizes: list[int]) -> bool:
    return all(s == g[1] if g[0] == "eq" else s >= 2 for g, s in zip(guards, sizes))


def size_recompiles(case) -> tuple[frozenset[int], ...] | None:
    """The numbers of graphs each call of a single SDPA call may compile, when the calls
    differ in sequence length (`CallContext.grow`); None when they do not. The rules
    (docs/oracle.md):

    * a call whose sizes pass the guards of a graph already compiled compiles nothing;
    * otherwise it compiles one graph, whose guards on the lengths are: with
      `dynamic=False`, the exact sizes; with `dynamic=None` (automatic dynamic), exact
      sizes at first, then `>= 2` for the lengths whose size changed; with `dynamic=True`,
      `>= 2`, except that sizes 0 and 1 are specialised. Lengths marked with
      `mark_dynamic` are guarded as under `dynamic=True`, whatever the mode.
    * With `dynamic=True`, a length equal to another dim's size at compile time, or to
      the storage offset of an input laid out with one, may share its symbol (duck
      sizing) and be tied to it, or not: from such a graph on, a call may compile one
      graph or none.
    """
    from fuzz.case import STORAGE_OFFSET, TensorSpec, grow_dims

    if not any(call.grow for call in case.calls):
        return None
    marks = grow_dims(case)
    specs = {name: case.spec(name) for name in marks}
    base = [specs[n].shape[d] for n in sorted(marks) for d, m in enumerate(marks[n]) if m]
    fixed = {d for name, spec in case.inputs if isinstance(spec, TensorSpec)
             for i, d in enumerate(spec.shape) if not marks.get(name, (0,) * 9)[i]}
    if any(isinstance(spec, TensorSpec) and spec.layout == "offset" for _, spec in case.inputs):
        fixed.add(STORAGE_OFFSET)  # a symbol under dynamic=True too (guard: offset == S)
    mode = case.compile.dynamic
    graphs: list[tuple] = []
    state: list[int | None] | None = None  # automatic dynamic: None marks a dynamic length
    uncertain = False
    counts: list[frozenset[int]] = []
    for call in case.calls:
        sizes = [b + call.grow for b in base]
        if uncertain:
            counts.append(frozenset((0, 1)))
            continue
        if any(_passes(g, sizes) for g in graphs):
            counts.append(frozenset((0,)))
            continue
        if mode is True or case.compile.mark_dynamic:
            guards = tuple(("eq", s) if s < 2 else ("ge",) for s in sizes)
            uncertain = mode is True and any(s >= 2 and s in fixed for s in sizes)
        elif mode is False:
            guards = tuple(("eq", s) for s in sizes)
        else:
            state = list(sizes) if state is None else [
                None if old is None or old != s else old for old, s in zip(state, sizes)]
            guards = tuple(("eq", s) if old is not None or s < 2 else ("ge",)
                           for old, s in zip(state, sizes))
        graphs.append(guards)
        counts.append(frozenset((1,)))
    return tuple(counts)
