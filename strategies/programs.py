"""Programs: short statement sequences around SDPA, drawn over the names in scope.

Each statement reads names already defined, of the kind it needs, so every drawn program
is well formed and shrinks to a well-formed one. The first alternative everywhere is the
plain one, so a shrunk program keeps only the statements its failure needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from hypothesis import strategies as st

from fuzz.case import (AUTOCASTS, BACKENDS, BREAK_PLACES, FLAGS, GRAD_MODES, MUTATIONS,
                       PARAM_ATTRS, Attention,
                       BuildParams, CallContext, GraphBreak, KernelBlock, Mutate, ParamsAttr,
                       Program, ReadBackends, ReadFlag, SetFlag, Shift, Statement, walk)
from strategies.attention import dropout_ps, scales

CONSTANTS = (1.0, 0.5, -2.0, 0.0, 3.0)


@dataclass
class Scope:
    """Names defined so far, by kind, while a program is being drawn."""

    tensors: list[str]
    params: list[str]
    values: list[str] = field(default_factory=list)
    counter: int = 0
    queries: list[str] = field(default_factory=list)  # tensors shaped as the query

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    @property
    def all(self) -> list[str]:
        return self.tensors + self.params + self.values


@dataclass(frozen=True)
class Operands:
    """The tensors an SDPA call or SDPAParams reads, and the call's fixed flags."""

    query: str = "q"
    key: str = "k"
    value: str = "v"
    mask: str | None = None
    is_causal: bool = False
    enable_gqa: bool = False
    chain: bool = False  # the output is shaped as the query: it may be the next call's
    scale_extremes: bool = True  # tiny, huge and zero scales may be drawn (`scales`)


def backend_lists() -> st.SearchStrategy[tuple[str, ...]]:
    return st.lists(st.sampled_from(BACKENDS), min_size=1, max_size=len(BACKENDS),
                    unique=True).map(tuple)


def grad_modes() -> st.SearchStrategy[str]:
    """No grad mode around the call first; then any, `enable_grad` (the default state,
    which must share the default's graphs) included."""
    return st.one_of(st.just("default"), st.sampled_from(GRAD_MODES))


def autocasts() -> st.SearchStrategy[str | None]:
    """Mostly no autocast around the call; sometimes to bfloat16 or float16."""
    return st.one_of(st.none(), st.none(), st.sampled_from(AUTOCASTS))


@st.composite
def with_modes(draw: st.DrawFn, context: CallContext) -> CallContext:
    """The context with a grad mode and an autocast dtype around the call too."""
    return replace(context, grad_mode=draw(grad_modes()), autocast=draw(autocasts()))


def call_contexts(modes: bool = True) -> st.SearchStrategy[CallContext]:
    """No outer context first; then any backend list, with or without priority; and
    global modes (`with_modes`) unless `modes` is False. Inputs of the case's own values
    first, then of a seed variant: a call on new values of the same shapes, which the
    compiled function must serve without compiling again."""
    salts = st.one_of(st.just(0), st.integers(1, 3))
    contexts = st.one_of(st.builds(CallContext, st.none(), st.just(False), salts),
                         st.builds(CallContext, backend_lists(), st.booleans(), salts))
    return contexts.flatmap(with_modes) if modes else contexts


def kernel_contexts() -> st.SearchStrategy[CallContext]:
    """No context first (the dispatcher's own choice); then one kernel alone, which makes
    eager run exactly that kernel or raise; then any backend list."""
    return st.one_of(st.just(CallContext()),
                     st.sampled_from(BACKENDS[:4]).map(lambda b: CallContext((b,))),
                     st.builds(CallContext, backend_lists(), st.booleans()))


def call_sequences(modes: bool = True, several: bool = True
                   ) -> st.SearchStrategy[tuple[CallContext, ...]]:
    """One to three calls from outer contexts; `several` False: one plain call."""
    if not several:
        return (with_modes(CallContext()) if modes
                else st.just(CallContext())).map(lambda c: (c,))
    return st.lists(call_contexts(modes), min_size=1, max_size=3).map(tuple)


@st.composite
def statements(draw: st.DrawFn, scope: Scope, ops: Operands, depth: int,
               may_break: bool) -> Statement:
    kinds = ["attention", "mutate", "shift", "sdpa_params", "read_backends", "set_flag"]
    if scope.params:
        kinds.append("params_attr")
    if may_break:
        kinds += ["graph_break", "read_flag"]
    if depth < 2:
        kinds.append("sdpa_kernel")
    kind = draw(st.sampled_from(kinds))
    if kind == "attention":
        # The query first, then what a program computed from it or from an earlier
        # call's output: chained attention, as stacked layers make it.
        out = scope.fresh("out")
        stmt: Statement = Attention(out, draw(st.sampled_from(scope.queries)), ops.key,
                                    ops.value, ops.mask, draw(dropout_ps()), ops.is_causal,
                                    draw(scales(ops.scale_extremes)), ops.enable_gqa)
        scope.tensors.append(out)
        if ops.chain:
            scope.queries.append(out)
    elif kind == "mutate":
        stmt = Mutate(draw(st.sampled_from(scope.tensors)), draw(st.sampled_from(MUTATIONS)),
                      draw(st.sampled_from(CONSTANTS)))
    elif kind == "shift":
        stmt = Shift(scope.fresh("t"), draw(st.sampled_from(scope.tensors)),
                     draw(st.sampled_from(CONSTANTS)))
        scope.tensors.append(stmt.out)
        if stmt.source in scope.queries:
            scope.queries.append(stmt.out)
    elif kind == "sdpa_params":
        stmt = BuildParams(scope.fresh("params"), ops.query, ops.key, ops.value,
                           draw(st.sampled_from((None, ops.mask))), draw(st.sampled_from(
                               (0.0, 0.1))), draw(st.booleans()), draw(st.booleans()))
        scope.params.append(stmt.out)
    elif kind == "params_attr":
        attr = draw(st.sampled_from(PARAM_ATTRS))
        stmt = ParamsAttr(scope.fresh("field"), draw(st.sampled_from(scope.params)), attr)
        (scope.tensors if attr in ("query", "key", "value") else scope.values).append(stmt.out)
    elif kind == "read_backends":
        stmt = ReadBackends(scope.fresh("backends"), may_break and draw(st.booleans()))
        scope.values.append(stmt.out)
    elif kind == "read_flag":
        stmt = ReadFlag(scope.fresh("flag"), draw(st.sampled_from(FLAGS)))
        scope.values.append(stmt.out)
    elif kind == "set_flag":
        stmt = SetFlag(draw(st.sampled_from(FLAGS)), draw(st.booleans()))
    elif kind == "graph_break":
        stmt = GraphBreak(draw(st.sampled_from(BREAK_PLACES)))
    else:
        style = draw(st.sampled_from(("with", "decorator")))
        # A break inside a decorated function has no frame rule, so none is drawn there.
        inner_may_break = may_break and style == "with"
        # What the block sets is what code inside it sees: often read it straight away.
        peek = [ReadBackends(scope.fresh("inside"), inner_may_break and draw(st.booleans()))
                ] if draw(st.booleans()) else []
        scope.values += [r.out for r in peek]
        body = peek + draw(st.lists(statements(scope, ops, depth + 1, inner_may_break),
                                    min_size=0 if peek else 1, max_size=3))
        stmt = KernelBlock(draw(backend_lists()), tuple(body), draw(st.booleans()), style)
    return stmt


@st.composite
def programs(draw: st.DrawFn, tensors: list[str], params: list[str], ops: Operands
             ) -> Program:
    """Up to five statements, then a non-empty selection of everything in scope to return.
    Three programs in four that draw no SDPA call get one at the end, returned: drawn
    freely, most programs would have none (57% of 400), and real ones exist to call it.
    The fourth keeps the programs that test Dynamo's handling of SDPA state alone, and is
    what shrinking goes to, so a failure that needs no call loses it. Every SDPA output
    is returned."""
    scope = Scope(list(tensors), list(params), queries=[ops.query])
    body = draw(st.lists(statements(scope, ops, 0, True), min_size=1, max_size=5))
    if not any(isinstance(s, Attention) for s in walk(body)) and draw(st.integers(0, 3)):
        called = scope.fresh("out")
        body.append(Attention(called, ops.query, ops.key, ops.value, ops.mask,
                              draw(dropout_ps()), ops.is_causal,
                              draw(scales(ops.scale_extremes)), ops.enable_gqa))
        scope.tensors.append(called)
    returns = draw(st.lists(st.sampled_from(scope.all), min_size=1, max_size=4, unique=True))
    # An SDPA output that nothing returns is dead code: Dynamo drops the call, and with it
    # every fault the call could show (over eight fault backends, drawn programs that
    # returned several values showed the fault 16 points less often than the rest).
    outputs = [s.out for s in walk(body) if isinstance(s, Attention)]
    returns[:0] = [out for out in outputs if out not in returns]
    if len(returns) == 1 and returns[0] in scope.params:
        returns.append(tensors[0])  # an SDPAParams returned alone has no frame rule
    return Program(tuple(body), tuple(returns))

