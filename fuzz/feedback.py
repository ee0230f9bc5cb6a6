"""What a judged case tells Hypothesis: an `event` per area of the search it reached
(`fuzz.report.coverage_areas`, which `--hypothesis-show-statistics` tabulates), and a
`target` on its worst compiled/eager error ratio, so that Hypothesis's targeted phase
climbs towards values near the bound, where a small numerical fault first shows.

One target per kind of program (`RATIO_LABEL: sdpa-call`, `...: hand-written`, ...):
Hypothesis climbs each label apart, so the targeted phase, up to half of a long run's
cases, is shared between the kinds. With one label, two 25-minute runs drew 92% of their
programs from one kind (hand-written for Inductor, plain SDPA calls for aot_eager), where
the generation phase alone draws each kind 17% to 34% of the time.
"""

from __future__ import annotations

from hypothesis import event, target
from hypothesis.control import currently_in_test_context

from fuzz.case import Case
from fuzz.oracle import Verdict
from fuzz.report import coverage_areas, program_forms

RATIO_LABEL = "worst compiled/eager error ratio"
KINDS = ("nn-module", "model-layer", "hand-written", "sdpa-call")  # the first a case has


def kind(case: Case) -> str:
    """The kind of program a case is, for its target's label."""
    forms = program_forms(case)
    return next((k for k in KINDS if k in forms), "no-attention")


def worst_ratio(verdicts: list[Verdict]) -> float:
    """The largest compiled error over its allowance base of any value measured (1 is
    `FUDGE` times below failing), over passing verdicts alone: a case that fails as a
    known bug does would otherwise be the summit, and the climb would go back to the
    known bug (finding 13's ratios are 1e5; a 25-minute Inductor run whose target
    counted them reported six of its symptoms, how many of them through the climb is not
    measured)."""
    return max([ratio for v in verdicts if v.ok for _, ratio in v.errors] or [0.0])


def steer(case: Case, verdicts: list[Verdict]) -> None:
    """Report the case's areas and worst error ratio to Hypothesis; nothing outside a
    Hypothesis test (the public API's `check_case` may be called from plain code)."""
    if not currently_in_test_context():
        return
    for area in sorted(coverage_areas(case, verdicts[0])):
        event(area)
    target(worst_ratio(verdicts), label=f"{RATIO_LABEL}: {kind(case)}")
