"""The fuzz loop: Hypothesis generates and shrinks, the oracle judges, the corpus remembers.

Hypothesis stops at the first failure it has shrunk. The driver saves that failure, adds
its signature to the known set (so it no longer fails) and starts Hypothesis again, until
the budget is spent. Each signature gets its own exception type, so Hypothesis shrinks
each bug on its own instead of sliding from one into another.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch
from hypothesis import HealthCheck, given, seed, settings
from hypothesis.database import DirectoryBasedExampleDatabase

from fuzz.case import Case
from fuzz.caseio import case_to_json
from fuzz.corpus import Expectation, atomic_write, environment, known_signatures, write_entry
from fuzz.execute import Timings, run_case
from fuzz.oracle import Verdict, judge
from strategies import cases


class BudgetSpent(BaseException):
    """Ends a Hypothesis run from inside the test. A BaseException, so that Hypothesis
    propagates it at once instead of treating it as a failure to shrink."""


class Finding(Exception):
    """A case that fails with a signature not yet known; one subclass per signature."""

    def __init__(self, case: Case, verdict: Verdict) -> None:
        super().__init__(verdict.explain())
        self.case = case
        self.verdict = verdict


_FINDING_TYPES: dict[str, type[Finding]] = {}


def finding_type(signature: str) -> type[Finding]:
    if signature not in _FINDING_TYPES:
        _FINDING_TYPES[signature] = type(f"Finding[{signature}]", (Finding,), {})
    return _FINDING_TYPES[signature]


@dataclass(frozen=True)
class RunConfig:
    backend: str = "inductor"
    device: str = "cpu"
    time_budget: float = 60.0
    max_examples: int = 10**9
    seed: int = 0
    corpus: Path = Path("corpus")
    report: Path | None = None
    confirm: bool = True
    progress: bool = False
    known: tuple[Path, ...] = ()  # other corpora whose signatures are not reported again
    stop_when: Callable[[Case], bool] | None = None  # stop after a finding whose case holds


@dataclass
class RunStats:
    started: float = field(default_factory=time.monotonic)
    examples: int = 0
    checks: Counter = field(default_factory=Counter)
    failed_checks: Counter = field(default_factory=Counter)
    timings: Timings = field(default_factory=Timings)
    findings: list[dict[str, Any]] = field(default_factory=list)
    flaky: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


def _smaller(a: Case, b: Case | None) -> bool:
    return b is None or len(case_to_json(a)) < len(case_to_json(b))


def _confirm(path: Path, backend: str) -> str | None:
    """Why a pending entry is not confirmed, or None: replayed in a fresh process it must
    fail the same way again, and its standalone repro script must show a divergence (a
    finding only the harness sees is the harness's bug, not torch's)."""
    checks = (([sys.executable, "-m", "fuzz.cli", "replay", str(path), "--backend", backend],
               0, "did not reproduce in a fresh process"),
              ([sys.executable, str(path.with_suffix(".py"))], 1,
               "its standalone repro script shows no divergence"))
    for cmd, expected, reason in checks:
        try:
            if subprocess.run(cmd, capture_output=True, timeout=600).returncode != expected:
                return reason
        except subprocess.TimeoutExpired:
            return reason + " (timed out)"
    return None


class Fuzzer:
    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.stats = RunStats()
        self.known = known_signatures(config.corpus).union(
            *(known_signatures(folder) for folder in config.known))
        self.stop = False
        self.best: dict[str, tuple[Case, Verdict]] = {}
        self.database = DirectoryBasedExampleDatabase(str(config.corpus / ".hypothesis"))
        self._last_progress = 0.0

    def check(self, case: Case) -> None:
        """The property: a case passes unless it fails with a signature not yet known."""
        if self.stats.elapsed > self.config.time_budget:
            raise BudgetSpent
        self.stats.examples += 1
        verdict = judge(case, run_case(case, self.config.backend, self.stats.timings))
        self.stats.checks.update(verdict.checked)
        self.stats.failed_checks.update(f.check for f in verdict.failures)
        self._progress()
        new = [f for f in verdict.failures if f.signature not in self.known]
        if new:
            signature = new[0].signature
            if _smaller(case, self.best.get(signature, (None,))[0]):
                self.best[signature] = (case, verdict)
            raise finding_type(signature)(case, verdict)

    def _progress(self) -> None:
        if not self.config.progress or time.monotonic() - self._last_progress < 1.0:
            return
        self._last_progress = time.monotonic()
        s = self.stats
        sys.stderr.write(f"\r{s.examples} cases, {s.examples / max(s.elapsed, 1e-9):.1f}/s, "
                         f"{len(s.findings)} findings, {s.elapsed:.0f}s of "
                         f"{self.config.time_budget:.0f}s   ")
        sys.stderr.flush()

    def record(self, case: Case, verdict: Verdict, signature: str) -> None:
        """Confirm in a fresh process, then write to the corpus (or quarantine) and only
        then report."""
        self.known.add(signature)
        self.best.pop(signature, None)
        finding = {"signature": signature, "explanation": verdict.explain(),
                   "found_at_s": round(self.stats.elapsed, 2),
                   **environment(self.config.backend, case.device)}
        expect = Expectation("known-failure", signature, torch_min=torch.__version__.split("+")[0],
                             note="found by sdpa-fuzz run; triage, then keep or promote")
        case = replace(case, compile=replace(case.compile, backend=self.config.backend))
        corpus = self.config.corpus
        pending = write_entry(corpus / ".pending", case, expect, finding, self.config.backend)
        doubt = _confirm(pending, self.config.backend) if self.config.confirm else None
        confirmed = doubt is None
        folder = corpus if confirmed else corpus / "quarantine"
        if doubt is not None:
            expect = replace(expect, outcome="flaky", note=doubt)
        final = write_entry(folder, case, expect, finding, self.config.backend)
        for p in (pending, pending.with_suffix(".py")):
            p.unlink(missing_ok=True)
        item = {"signature": signature, "case": str(final), "found_at_s": finding["found_at_s"],
                "explanation": verdict.explain()}
        (self.stats.findings if confirmed else self.stats.flaky).append(item)
        if confirmed and self.config.stop_when is not None and self.config.stop_when(case):
            self.stop = True
        label = "FOUND" if confirmed else "FLAKY (quarantined)"
        print(f"\n{label} {signature}\n  {final}\n  " +
              verdict.explain().replace("\n", "\n  "), flush=True)

    def _hypothesis_round(self, round_no: int) -> None:
        remaining = self.config.max_examples - self.stats.examples

        @settings(max_examples=max(1, min(remaining, 10**6)), deadline=None,
                  database=self.database, print_blob=False, report_multiple_bugs=True,
                  suppress_health_check=list(HealthCheck))
        @seed(self.config.seed * 1_000_003 + round_no)
        @given(cases(self.config.backend, self.config.device))
        def sdpa_fuzz_property(case: Case) -> None:
            self.check(case)

        sdpa_fuzz_property()

    def run(self) -> RunStats:
        round_no = 0
        try:
            while (self.stats.examples < self.config.max_examples
                   and self.stats.elapsed < self.config.time_budget):
                try:
                    self._hypothesis_round(round_no)
                    break
                except BudgetSpent:
                    break
                except (Finding, BaseExceptionGroup) as exc:
                    for finding in _findings(exc):
                        self.record(finding.case, finding.verdict, _signature_of(finding))
                round_no += 1
                if self.stop:
                    break
        except KeyboardInterrupt:
            self.stats.interrupted = True
        finally:
            for signature, (case, verdict) in list(self.best.items()):
                self.record(case, verdict, signature)  # found but not yet fully shrunk
        if self.config.progress:
            sys.stderr.write("\n")
        if self.config.report is not None:
            atomic_write(self.config.report, json.dumps(self.report(), indent=1) + "\n")
        return self.stats

    def report(self) -> dict[str, Any]:
        s = self.stats
        total = max(s.elapsed, 1e-9)
        measured = sum(s.timings.phases.values())
        shares = {k: round(v / total, 4) for k, v in s.timings.phases.items()}
        shares["other"] = round(max(0.0, total - measured) / total, 4)
        return {"backend": self.config.backend, "device": self.config.device,
                "torch": torch.__version__, "seed": self.config.seed,
                "examples": s.examples, "elapsed_s": round(s.elapsed, 2),
                "cases_per_s": round(s.examples / total, 3), "interrupted": s.interrupted,
                "checks": dict(s.checks), "failed_checks": dict(s.failed_checks),
                "time_share": shares, "failures": s.findings, "flaky": s.flaky}


def _findings(exc: BaseException) -> list[Finding]:
    if isinstance(exc, Finding):
        return [exc]
    if isinstance(exc, BaseExceptionGroup):
        found = [f for e in exc.exceptions for f in _findings(e)]
        if len(found) == len(exc.exceptions):
            return found
    raise exc


def _signature_of(finding: Finding) -> str:
    return next(sig for sig, t in _FINDING_TYPES.items() if type(finding) is t)

