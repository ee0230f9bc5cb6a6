"""The frame model: how many graphs Dynamo hands the backend on a program's first call.

A pure function of the program. Its rules, and the Dynamo behaviour behind each, are in
docs/oracle.md; tests/test_frames.py pins every rule to a program observed on torch 2.13.

The program is read as a sequence of events, `OP` (puts at least one node in the graph)
and `BREAK` (ends the graph), in execution order:

1. Each maximal run of events between breaks is one graph if it holds an OP, none if not:
   Dynamo does not call the backend for a graph with no calls in it.
2. A graph break inside a `for` loop makes Dynamo skip the whole frame: no graphs at all.
3. A break inside a helper function (one or two calls deep) splits the caller's graph at
   the call; the helpers' own frames add graphs only for ops in them, and ours have none.
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
   input SDPAParams that is returned is rebuilt in the last graph, an OP at the end.
"""

from __future__ import annotations

from fuzz.case import (Attention, BuildParams, GraphBreak, KernelBlock, Mutate, ParamsAttr,
                       Program, ReadBackends, ReadFlag, SetFlag, Shift, Statement)

OP, BREAK, LOOP_BREAK = "op", "break", "loop-break"


def events(body: tuple[Statement, ...]) -> list[str]:
    """The program's OP and BREAK events in execution order (rules 3 to 6)."""
    out: list[str] = []
    for stmt in body:
        if isinstance(stmt, (Attention, Mutate, BuildParams, ParamsAttr, Shift, SetFlag)):
            out.append(OP)
        elif isinstance(stmt, GraphBreak):
            out.append(LOOP_BREAK if stmt.place == "loop" else BREAK)
        elif isinstance(stmt, ReadBackends):
            out.append(BREAK if stmt.with_priority else OP)
        elif isinstance(stmt, ReadFlag):
            out.append(BREAK)
        elif isinstance(stmt, KernelBlock):
            inner = events(stmt.body)
            if stmt.style == "decorator" and any(e != OP for e in inner):
                raise ValueError("the frame model has no rule for a graph break inside an "
                                 "@sdpa_kernel-decorated function")
            out += [OP] + inner + [OP]
        else:
            raise TypeError(f"the frame model has no rule for {type(stmt).__name__}")
    return out


def must_break(program: Program) -> bool:
    """Whether Dynamo must break the graph, so that `fullgraph=True` must raise."""
    return any(e != OP for e in events(program.body))


def predict_frames(program: Program, params_inputs: frozenset[str] = frozenset()) -> int:
    """Graphs compiled by the first call (rules 1, 2 and 6)."""
    seq = events(program.body)
    if params_inputs & set(program.returns):
        seq.append(OP)
    if LOOP_BREAK in seq:
        return 0
    graphs, has_op = 0, False
    for event in seq + [BREAK]:
        if event == OP:
            has_op = True
        elif has_op:
            graphs, has_op = graphs + 1, False
    return graphs
