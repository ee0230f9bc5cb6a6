"""How a search draws its cases: stretches of fresh draws, taking turns with stretches of
Hypothesis's own generation.

Hypothesis's generation is built for tests that cost microseconds. After each new case it
runs up to five mutations of it, which copy one part of the case over another part with
the same label. After 200 cases it starts climbing `target` scores with local changes. In
300 cases of the `sdpa` space, 241 were such mutations, near copies of the case before
them. A case here costs a compile, so those copies cost what a new case would, and they
rarely find more. Over eight plain faults and three seeds, Hypothesis's own loop met the
first failure at cases 3 to 147, a median of 12.5; the same strategy drawn fresh at cases
2 to 46, a median of 7.

A registered Hypothesis backend that draws each case fresh (`FRESH`) skips both, and
keeps everything else: Hypothesis's database, its replay of a failure on its own backend,
and its shrinking. Stretches of its own generation still run in turn
(`stretch_backend`), for what duplicated values and the climb towards near-bound errors
may find that fresh draws miss (not measured yet). Fresh draws are full-size from the
start, where Hypothesis begins small: a fresh program costs more to compile (27 against
39 Inductor programs in a minute) and a failure found in one takes longer to shrink.
"""

from __future__ import annotations

from hypothesis.internal.conjecture.providers import AVAILABLE_PROVIDERS, HypothesisProvider

FRESH = "sdpa-fuzz-fresh"
STRETCH_CASES = 500  # programs a stretch draws before the other kind takes over


class FreshProvider(HypothesisProvider):
    """Hypothesis's own draws, one whole case at a time: as an alternative backend it is
    never asked for mutations, novel prefixes or target climbs."""


AVAILABLE_PROVIDERS[FRESH] = f"{__name__}.FreshProvider"


def stretch_backend(stretch: int) -> str:
    """The Hypothesis backend of a search's `stretch`-th stretch: fresh draws first."""
    return FRESH if stretch % 2 == 0 else "hypothesis"
