"""Swarm testing (Groce et al., ISSTA 2012): each case first draws which departures from
the plain call it may make, each allowed one time in two, and draws only among those.

Every departure here is an edge that hides most faults where it appears: values that are
all tiny or all equal (or one row expanded) make softmax uniform; a length or head dim of
1 makes it trivial; a mask broadcast along the keys or masking every row changes no
weight that survives; a scale of 0 or 1e-6 flattens the scores and 1e3 saturates them; a
grad mode or autocast loosens the tolerance or changes the dtype; later calls, an invalid
argument or a size of 0 take the case elsewhere. Drawn together, a case with none of them
is rare: 1 in 64 cases had q, k and v all of normal values. With swarm draws, half the
cases keep each edge out, so plain cases stay common and every edge is still drawn as
often as one departure in two allows. Sizes that only some faults need, such as the
kernels' boundary head dims, are not edges: gating them would hide those faults, not
reveal others.

Each flag shrinks to "not allowed", so a shrunk case keeps only the departures its
failure needs.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

DEPARTURES = ("values", "unit-sizes", "scale-extremes", "mask-edges", "modes", "calls",
              "invalid", "zero-size")


@dataclass(frozen=True)
class Swarm:
    """The departures from the plain call one case may make."""

    allowed: frozenset[str] = frozenset(DEPARTURES)

    def allows(self, departure: str) -> bool:
        assert departure in DEPARTURES, departure
        return departure in self.allowed


def swarms() -> st.SearchStrategy[Swarm]:
    """Each departure allowed one time in two."""
    flags = st.tuples(*(st.booleans() for _ in DEPARTURES))
    return flags.map(lambda on: Swarm(frozenset(d for d, o in zip(DEPARTURES, on) if o)))
