"""The verdict on a case: `fuzz.check`'s judgement of its runs under the case's plan, with
what a reader of a failure needs besides (the rewrites that fired, hand-written notes).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from fuzz import rewrites
from fuzz.case import Case
from fuzz.check import Failure, judge as judge_runs
from fuzz.execute import CaseRun
from fuzz.plan import plan_of


@dataclass(frozen=True)
class Verdict:
    failures: tuple[Failure, ...]
    checked: tuple[str, ...]
    errors: tuple[tuple[str, float], ...]  # (dtype, compiled/eager error ratio) per output
    rewrites: tuple[str, ...] = ()  # Inductor attention patterns that fired
    notes: tuple[str, ...] = ()  # what a reader of a failure needs to know about the case
    kernels: tuple[str, ...] = ()  # the SDPA kernels eager ran, in the order of first use
    excused: tuple[str, ...] = ()  # why a call's outputs had no truth to compare with
    # (subject, fudge, floor, ratio) of each values measurement: the bound a minimal
    # repro holds its subject to (`fuzz.minimal.Target`)
    bounds: tuple[tuple[str, float, float, float], ...] = ()

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def own_failures(self) -> tuple[Failure, ...]:
        """The failures that may be bugs of their own: not those that follow their call's
        outcome divergence (`Failure.follows`), which are listed on it."""
        return tuple(f for f in self.failures if not f.follows)

    @property
    def signature(self) -> str:
        return self.failures[0].signature if self.failures else "pass"

    def explain(self) -> str:
        if self.ok:
            return "compiled matches eager on every check"
        return "\n".join([f"[{f.signature}] " + (f"(follows the {f.follows}) " if f.follows
                                                  else "") + f.detail for f in self.failures]
                         + list(self.notes))


def judge(case: Case, run: CaseRun) -> Verdict:
    """Every check of the compiled run against eager, the reference and the frame model."""
    judged = judge_runs(plan_of(case), run.eager, run.reference, run.compiled, run.frames,
                        run.rounded)
    failures = judged.failures
    if run.rewrites:  # shown on the signature: the replacement is a symptom, not the bug
        tag = "+".join(sorted({rewrites.short(p) for p in run.rewrites}))
        failures = [replace(f, rewrite=tag) for f in failures]
    kernels = tuple(dict.fromkeys(run.eager[0].kernels))
    return Verdict(tuple(failures), tuple(sorted(judged.checked)),
                   tuple((label, m.ratio) for label, _, m in judged.measures), run.rewrites,
                   _hand_notes(case, run), kernels, tuple(judged.excused),
                   tuple((where, m.fudge, m.floor, m.ratio) for _, where, m in judged.measures))


def _hand_notes(case: Case, run: CaseRun) -> tuple[str, ...]:
    """What the case's hand-written attention is, as the canonical pattern and its
    differences, and whether Inductor replaced it with SDPA."""
    notes = []
    for a in rewrites.hand_attentions(case):
        differs = a.deviations()
        notes.append("hand-written attention: the canonical pattern "
                     "softmax(q @ k.transpose(-2, -1) / sqrt(E), -1) @ v"
                     + (", except " + ", ".join(differs) if differs else ""))
    if notes:
        notes.append("Inductor's fuse_attention replaced it with SDPA: " + ", ".join(
            run.rewrites) if run.rewrites else "Inductor's fuse_attention did not rewrite it")
    return tuple(notes)
