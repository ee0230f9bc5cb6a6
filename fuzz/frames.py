"""The frame model: how many graphs Dynamo hands the backend on a program's first call.

A pure function of the program. Its rules, and the Dynamo behaviour behind each, are in
docs/oracle.md; tests/test_frames.py pins every rule to a program observed on torch 2.13.

The program is read as a sequence of events, `OP` (puts at least one node in the graph),
`BREAK` (ends the graph) and `SKIP` (see rule 2), in execution order:

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
"""

from __future__ import annotations

from fuzz.case import (Attention, BuildParams, GraphBreak, KernelBlock, Mutate, ParamsAttr,
                       Program, ReadBackends, ReadFlag, SetFlag, Shift, Statement, walk)

OP, BREAK, SKIP = "op", "break", "skip"


def events(body: tuple[Statement, ...], open_blocks: list[bool] | None = None) -> list[str]:
    """The program's OP, BREAK and SKIP events in execution order (rules 2 to 6).

    `open_blocks` holds, for each enclosing `sdpa_kernel` block, whether a break inside it
    has already been resumed (rule 2).
    """
    blocks = [] if open_blocks is None else open_blocks
    out: list[str] = []

    def breaking(in_loop: bool = False) -> str:
        if in_loop or any(blocks):
            return SKIP
        blocks[:] = [True] * len(blocks)
        return BREAK

    for stmt in body:
        if isinstance(stmt, (Attention, Mutate, BuildParams, ParamsAttr, Shift, SetFlag)):
            out.append(OP)
        elif isinstance(stmt, GraphBreak):
            out.append(breaking(in_loop=stmt.place == "loop"))
        elif isinstance(stmt, ReadBackends):
            out.append(breaking() if stmt.with_priority else OP)
        elif isinstance(stmt, ReadFlag):
            out.append(breaking())
        elif isinstance(stmt, KernelBlock):
            blocks.append(False)
            inner = events(stmt.body, blocks)
            blocks.pop()
            if stmt.style == "decorator" and any(e != OP for e in inner):
                raise ValueError("the frame model has no rule for a graph break inside an "
                                 "@sdpa_kernel-decorated function")
            out += [OP] + inner + [OP]
        else:
            raise TypeError(f"the frame model has no rule for {type(stmt).__name__}")
    return out


def params_names(program: Program, params_inputs: frozenset[str]) -> set[str]:
    """Every name that holds an SDPAParams: the inputs, and those built in the program."""
    return set(params_inputs) | {s.out for s in walk(program.body) if isinstance(s, BuildParams)}


def must_break(program: Program) -> bool:
    """Whether Dynamo must break the graph, so that `fullgraph=True` must raise."""
    return any(e != OP for e in events(program.body))


def predict_frames(program: Program, params_inputs: frozenset[str] = frozenset()) -> int:
    """Graphs compiled by the first call (rules 1, 2 and 6)."""
    alone = program.returns[0] if len(program.returns) == 1 else None
    if alone in params_inputs or (alone in params_names(program, params_inputs)
                                  and must_break(program)):
        raise ValueError("the frame model has no rule for returning an SDPAParams alone")
    seq = events(program.body)
    if SKIP in seq:
        seq = seq[: seq.index(SKIP)]
        seq = seq[: len(seq) - seq[::-1].index(BREAK)] if BREAK in seq else []
    graphs, has_op = 0, False
    for event in seq + [BREAK]:
        if event == OP:
            has_op = True
        elif has_op:
            graphs, has_op = graphs + 1, False
    return graphs
