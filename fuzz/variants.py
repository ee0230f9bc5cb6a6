"""How many seed variants of a case run on its compiled program: a variant reuses the
compile, so on a backend whose compile costs seconds it is a cheap extra case.
"""

from __future__ import annotations

from dataclasses import dataclass

from fuzz.case import Case
from fuzz.plan import frozen_parameters
from fuzz.worker import CaseResult

MAX_VARIANTS = 16
VARIANT_SHARE = 0.5  # seed variants may cost up to this fraction of the compile they reuse


@dataclass
class VariantPolicy:
    """How many seed variants of each case to run on its compiled program: enough to
    spend about VARIANT_SHARE of the compile time on them (many for Inductor, whose
    compile costs seconds; few for Dynamo alone). Fixed by `fixed`, or frozen once a round
    has found a failure, so that Hypothesis's replays of a failing case run the same
    variants."""

    fixed: int | None = None
    compile_s: float | None = None  # running means of the seconds a first case and a
    variant_s: float | None = None  # variant take in the worker
    frozen: int | None = None
    requests: int = 0

    def count(self) -> int:
        if self.fixed is not None:
            return self.fixed
        if self.frozen is not None:
            return self.frozen
        if self.compile_s is None or self.variant_s is None:
            return 1
        return max(1, min(MAX_VARIANTS, int(VARIANT_SHARE * self.compile_s / self.variant_s)))

    def batch(self, case: Case) -> list[Case]:
        """The case and its seed variants; none where each call compiles anew anyway."""
        if frozen_parameters(case):
            return [case]
        return [case] + [case.reseeded(k) for k in range(1, self.count() + 1)]

    def learn(self, results: list[CaseResult]) -> None:
        def mean(old: float | None, new: float) -> float:
            return new if old is None else 0.8 * old + 0.2 * new
        self.requests += 1
        if self.requests == 1:
            return  # a fresh worker's first case pays Dynamo's one-time start-up
        if results and results[0].phases:
            self.compile_s = mean(self.compile_s, sum(results[0].phases.values()))
        for r in results[1:]:
            if r.phases:
                self.variant_s = mean(self.variant_s, sum(r.phases.values()))

    def freeze(self, count: int) -> None:
        """Shrinking a failure seen on variant `count` (0: the case itself) needs that many
        variants and no more: each shrink step then costs no more than it must. Never
        lowered within a round, so every failure found in it still replays."""
        self.frozen = max(self.frozen or 0, count)

    def thaw(self) -> None:
        self.frozen = None
