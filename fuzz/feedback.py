"""What a judged case tells Hypothesis: an `event` per area of the search it reached
(`fuzz.report.coverage_areas`, which `--hypothesis-show-statistics` tabulates), and a
`target` on its worst compiled/eager error ratio, so that Hypothesis's targeted phase
climbs towards values near the bound, where a small numerical fault first shows.
"""

from __future__ import annotations

from hypothesis import event, target
from hypothesis.control import currently_in_test_context

from fuzz.case import Case
from fuzz.oracle import Verdict
from fuzz.report import coverage_areas

RATIO_LABEL = "worst compiled/eager error ratio"


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
    target(worst_ratio(verdicts), label=RATIO_LABEL)
