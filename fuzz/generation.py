"""How a search draws its cases: a short stretch of plain SDPA calls, then stretches of
fresh draws of the whole space taking turns with stretches of Hypothesis's own generation.

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
and its shrinking. Stretches of its own generation still run in turn, for what duplicated
values and the climb towards near-bound errors may find that fresh draws miss.

Breadth costs the simple bugs. Of 150 cases of the whole `sdpa` space that met one of six
plain faults' conditions, 58% hid the fault (a program around the call, odd values, a key
broadcast along the sequence, a scale of 1e-6); of single calls, 40%. So each search
starts, and every 1,025 programs starts again, with a stretch of plain calls
(`strategies.cases.plain_cases`: one SDPA call with no swarm departure but sizes of 1,
one time in two, and none in the simplest case, which Hypothesis draws first),
each program judged on its own inputs only, without seed variants, so that the stretch's
cases go to new structure. Over the 15 faults a plain random search of SDPA's arguments
can reach, 40 programs drawn for each, the share of programs that showed the fault was
0.21 per fault for plain calls (before sizes of 1 were let in) and 0.19 for the plain
search. Their failures are small cases, which shrink in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis.internal.conjecture.providers import AVAILABLE_PROVIDERS, HypothesisProvider

FRESH = "sdpa-fuzz-fresh"


class FreshProvider(HypothesisProvider):
    """Hypothesis's own draws, one whole case at a time: as an alternative backend it is
    never asked for mutations, novel prefixes or target climbs."""


AVAILABLE_PROVIDERS[FRESH] = f"{__name__}.FreshProvider"


@dataclass(frozen=True)
class Stretch:
    """One stretch of a search: the Hypothesis backend that draws it, whether it draws
    plain calls only (without seed variants), and how many programs it draws."""

    backend: str
    plain: bool
    programs: int


SCHEDULE = (Stretch(FRESH, plain=True, programs=25),
            Stretch(FRESH, plain=False, programs=500),
            Stretch("hypothesis", plain=False, programs=500))


def stretch(number: int, has_plain: bool) -> Stretch:
    """A search's `number`-th stretch; `has_plain` False for a space without plain SDPA
    calls (hand-written attention, models, modules), which skips the plain stretches."""
    schedule = SCHEDULE if has_plain else tuple(s for s in SCHEDULE if not s.plain)
    return schedule[number % len(schedule)]
