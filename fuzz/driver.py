"""The fuzz loop: Hypothesis generates and shrinks, workers run, the oracle judges, the
corpus remembers.

Each search thread runs its own Hypothesis loop (Hypothesis is thread-safe) over its own
worker process. Hypothesis stops at the first failure it has shrunk; the driver confirms
and saves it, adds its identity (`fuzz.identity`) to the known bugs (so cases it covers no
longer fail) and starts Hypothesis again, until the budget is spent. Each key gets its own
exception type, so Hypothesis shrinks each bug on its own instead of sliding from one into
another, and a key one thread is shrinking is not chased by another.
"""

from __future__ import annotations

import faulthandler
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch
from hypothesis import HealthCheck, given, seed, settings
from hypothesis.database import DirectoryBasedExampleDatabase

from fuzz.backends import declared_layers
from fuzz.case import Case
from fuzz.caseio import case_to_dict, case_to_json
from fuzz.corpus import (Expectation, KnownBug, atomic_write, claim, environment, known_bugs,
                         prune_claims, quarantined, release, write_entry)
from fuzz.identity import Identity, backend_layers, features
from fuzz.execute import Timings
from fuzz.minimal import target_of
from fuzz.oracle import Failure, Verdict
from fuzz import rewrites
from fuzz.worker import CaseResult, Interrupted, Worker
from strategies import space

MAX_VARIANTS = 16
MAX_FLAKY = 3  # flaky findings of one key, in the corpus's quarantine, before it closes
STOP_GRACE_S = 20.0  # after Ctrl-C, how long the searches get to stop
VARIANT_SHARE = 0.5  # seed variants may cost up to this fraction of the compile they reuse


class BudgetSpent(BaseException):
    """Ends a Hypothesis run from inside the test. A BaseException, so that Hypothesis
    propagates it at once instead of treating it as a failure to shrink."""


class Finding(Exception):
    """A case that fails with a key no known bug covers; one subclass per key, so that
    Hypothesis shrinks each bug on its own."""

    def __init__(self, case: Case, verdict: Verdict) -> None:
        super().__init__(verdict.explain())
        self.case = case
        self.verdict = verdict


_FINDING_TYPES: dict[str, type[Finding]] = {}
_TYPES_LOCK = threading.Lock()


def finding_type(key: str) -> type[Finding]:
    with _TYPES_LOCK:
        if key not in _FINDING_TYPES:
            _FINDING_TYPES[key] = type(f"Finding[{key}]", (Finding,), {"key": key})
        return _FINDING_TYPES[key]


@dataclass(frozen=True)
class RunConfig:
    backend: str = "inductor"
    device: str = "cpu"
    space: str = "all"  # see strategies.SPACES
    time_budget: float = 60.0
    max_examples: int = 10**9
    seed: int = 0
    corpus: Path = Path("corpus")
    database: Path | None = None  # default: <corpus>/.hypothesis
    report: Path | None = None
    confirm: bool = True
    progress: bool = False
    workers: int = 1
    case_timeout: float = 300.0
    variants: int | None = None  # seed variants per compiled program; None: adaptive
    known: tuple[Path, ...] = ()  # other corpora whose bugs are not reported again
    stop_when: Callable[[Case], bool] | None = None  # stop after a finding whose case holds


@dataclass
class RunStats:
    started: float = field(default_factory=time.monotonic)
    examples: int = 0
    programs: int = 0
    checks: Counter = field(default_factory=Counter)
    failed_checks: Counter = field(default_factory=Counter)
    first_failed_at: dict[str, int] = field(default_factory=dict)  # check -> cases before
    warm_only: Counter = field(default_factory=Counter)
    rewrite_programs: Counter = field(default_factory=Counter)  # family -> programs
    rewrite_hits: Counter = field(default_factory=Counter)  # family -> rewritten ones
    rewrite_patterns: Counter = field(default_factory=Counter)  # pattern -> programs
    kernel_cases: Counter = field(default_factory=Counter)  # eager's SDPA kernel -> cases
    excused: Counter = field(default_factory=Counter)  # why outputs went uncompared -> cases
    worst_ratio: dict[str, float] = field(default_factory=dict)  # quantity -> max error ratio
    timings: Timings = field(default_factory=Timings)
    findings: list[dict[str, Any]] = field(default_factory=list)
    flaky: list[dict[str, Any]] = field(default_factory=list)
    unconfirmed: list[dict[str, Any]] = field(default_factory=list)
    restarts: int = 0
    interrupted: bool = False
    known_hits: dict[str, dict[str, Any]] = field(default_factory=dict)  # entry -> hits

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


def _smaller(a: Case, b: Case | None) -> bool:
    return b is None or len(case_to_json(a)) < len(case_to_json(b))


def _process_signal(signature: str) -> int | None:
    """The exit status a crash signature stands for: -signal, or the exit code."""
    import signal
    condition = signature.split(":")[2]
    if condition.startswith("exit-"):
        return int(condition[5:]) if condition[5:].lstrip("-").isdigit() else None
    try:
        return -signal.Signals[condition].value
    except KeyError:
        return None


def _wait(cmd: list[str], timeout: float, stopping: Callable[[], bool],
          stderr: Any = subprocess.DEVNULL) -> int | None:
    """Run `cmd` quietly (its error output to `stderr`): its exit status, None if it timed
    out. Raises Interrupted (and kills it) if the run stops meanwhile. It runs in a session
    of its own, so that a Ctrl-C meant for the run reaches it only through the run, never
    as a failure of its own that would pass for a finding that does not reproduce."""
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr,
                               start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while process.poll() is None and not stopping() and time.monotonic() < deadline:
            time.sleep(0.1)
    except KeyboardInterrupt:  # Ctrl-C while confirming, after the searches stopped
        process.kill()
        process.wait()
        raise Interrupted from None
    if process.poll() is None:
        process.kill()
        process.wait()
        if not stopping():
            return None
    if stopping():
        raise Interrupted
    return process.returncode


def confirm(path: Path, signature: str, backend: str, case_timeout: float,
            stopping: Callable[[], bool] = lambda: False) -> str | None:
    """Why a pending entry is not confirmed, or None: replayed in a fresh process it must
    fail the same way again, and its minimal repro script must show it too (exit 1 for a
    divergence, its own check's, not an exception of the script's; the same signal for a
    crash; no end for a hang). A finding only the harness sees is the harness's bug, not
    torch's; one its minimal script cannot show is not reported as a bug."""
    check = signature.split(":")[0]
    replay = [sys.executable, "-m", "fuzz.cli", "replay", str(path), "--backend", backend,
              "--case-timeout", str(case_timeout)]
    if _wait(replay, case_timeout + 600, stopping) != 0:
        return "did not reproduce in a fresh process"
    script = [sys.executable, str(path.with_suffix(".py"))]
    if check == "timeout":
        script_timeout = case_timeout + 20  # its own start-up, then the hang
        return None if _wait(script, script_timeout, stopping) is None else \
            f"its standalone repro script ended within {script_timeout:g} s"
    with tempfile.TemporaryFile() as errors:
        status = _wait(script, case_timeout + 600, stopping, stderr=errors)
        errors.seek(0)
        raised = b"Traceback (most recent call last)" in errors.read()
    expected = _process_signal(signature) if check == "crash" else 1
    if status != expected:
        return f"its minimal repro script exited {status}, not {expected}"
    if raised and check != "crash":
        return "its minimal repro script raised an exception of its own"
    return None


class Fuzzer:
    """One run: search threads over worker processes, sharing what is known and found."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        prune_claims(config.corpus)
        self.stats = RunStats()
        self.layers = backend_layers(config.backend, declared_layers(config.backend))
        # A key stays open after a flaky finding, up to MAX_FLAKY of them in all.
        self.flaky_seen = quarantined(config.corpus)
        self.known: list[KnownBug] = self._corpus_bugs() + [
            KnownBug("(flaky, closed)", Identity(key, frozenset()))
            for key, n in self.flaky_seen.items() if n >= MAX_FLAKY]
        self.lock = threading.RLock()
        self.stop = threading.Event()
        self.interrupt = threading.Event()
        self.best: dict[str, tuple[Case, Verdict]] = {}  # found, not yet recorded
        self.owner: dict[str, int] = {}  # which search is shrinking a key
        self.database_path = config.database or config.corpus / ".hypothesis"

    def _corpus_bugs(self) -> list[KnownBug]:
        config = self.config
        return [bug for folder in (config.corpus, *config.known)
                for bug in known_bugs(folder, config.backend, self.layers)]

    def covering(self, key: str, found: frozenset[str],
                 bugs: list[KnownBug] | None = None) -> KnownBug | None:
        """The known bug whose identity covers a failure of `key` on a case with features
        `found`, if any."""
        return next((b for b in (self.known if bugs is None else bugs)
                     if b.identity.covers(key, found)), None)

    def _hit(self, bug: KnownBug, case: Case, signature: str) -> None:
        """Count a case that shows a known bug; keep the smallest as its sample."""
        hit = self.stats.known_hits.setdefault(bug.entry, {"cases": 0, "signatures": set(),
                                                           "sample": None})
        hit["cases"] += 1
        hit["signatures"].add(signature)
        if hit["sample"] is None or _smaller(case, hit["sample"]):
            hit["sample"] = case

    def stopping(self) -> bool:
        return self.stop.is_set()

    def over_budget(self) -> bool:
        return (self.stats.elapsed > self.config.time_budget
                or self.stats.examples >= self.config.max_examples)

    def account(self, results: list[CaseResult], seconds: float) -> None:
        with self.lock:
            s = self.stats
            s.programs += 1
            first = results[0]  # the program's own compile; its variants reuse it
            for label in rewrites.families(first.case):
                s.rewrite_programs[label] += 1
                s.rewrite_hits[label] += bool(first.verdict.rewrites)
            s.rewrite_patterns.update(first.verdict.rewrites)
            for r in results:
                s.warm_only.update(r.warm_only)
                s.checks.update(r.verdict.checked)
                s.kernel_cases.update(set(r.verdict.kernels))
                s.excused.update(set(r.verdict.excused))
                tag = "@" + "+".join(sorted(set(r.verdict.kernels))) if r.verdict.kernels else ""
                for quantity, ratio in r.verdict.errors:
                    key = quantity + tag
                    s.worst_ratio[key] = max(s.worst_ratio.get(key, 0.0), round(ratio, 4))
                for f in r.verdict.failures:
                    s.failed_checks[f.check] += 1
                    s.first_failed_at.setdefault(f.check, s.examples)
                s.examples += 1
                for phase, t in r.phases.items():
                    s.timings.add(phase, t)
            s.timings.add("transport", seconds - sum(t for r in results
                                                     for t in r.phases.values()))

    def first_new(self, results: list[CaseResult], search: int) -> tuple[str, CaseResult] | None:
        """The first failure that no known bug covers and no other search is shrinking
        (by key); remembers the smallest case seen for it. Failures a known bug covers are
        counted on it."""
        with self.lock:
            new = None
            for r in results:
                found = features(r.case) if r.verdict.failures else frozenset()
                for failure in r.verdict.failures:
                    key = failure.key
                    bug = self.covering(key, found)
                    if bug is not None:
                        self._hit(bug, r.case, failure.signature)
                        continue
                    if new is not None or self.owner.setdefault(key, search) != search:
                        continue
                    if _smaller(r.case, self.best.get(key, (None,))[0]):
                        self.best[key] = (r.case, r.verdict)
                    new = key, r
            return new

    def record(self, case: Case, verdict: Verdict, key: str) -> None:
        """Confirm in a fresh process, then write to the corpus (or quarantine) and only
        then report. A bug already in the corpus (another run may have saved it meanwhile)
        or claimed by a concurrent run is dropped."""
        identity = Identity(key, features(case))
        failure = next(f for f in verdict.failures if f.key == key)
        signature = failure.signature
        with self.lock:
            self.best.pop(key, None)
            bug = self.covering(key, identity.features)
            if bug is not None:
                self._hit(bug, case, signature)
                return
            self.known.append(KnownBug("(this run)", identity))
        if self.covering(key, identity.features, self._corpus_bugs()) is not None \
                or not claim(self.config.corpus, identity.name):
            return
        t0 = time.perf_counter()
        try:
            self._confirm_and_write(case, verdict, identity, failure)
        finally:
            release(self.config.corpus, identity.name)
            with self.lock:
                self.stats.timings.add("confirm", time.perf_counter() - t0)

    def _confirm_and_write(self, case: Case, verdict: Verdict, identity: Identity,
                           failure: Failure) -> None:
        config, corpus = self.config, self.config.corpus
        signature = failure.signature
        with self.lock:
            resembles = sorted({b.entry for b in self.known if b.identity.key == identity.key
                                and b.entry.endswith(".json")})
            finding = {"signature": signature, "key": identity.key,
                       "features": sorted(identity.features), "resembles": resembles,
                       "explanation": verdict.explain(),
                       "target": target_of(failure, verdict.bounds).to_dict(),
                       "checked": list(verdict.checked),
                       "kernels": list(verdict.kernels),
                       "found_at_s": round(self.stats.elapsed, 2),
                       "examples_at": self.stats.examples,
                       **environment(config.backend, case.device)}
        expect = Expectation("known-failure", signature, torch_min=torch.__version__.split("+")[0],
                             note="found by sdpa-fuzz run; triage, then keep or promote",
                             keys=(identity.key,), features=tuple(sorted(identity.features)))
        case = replace(case, compile=replace(case.compile, backend=config.backend))
        pending = write_entry(corpus / ".pending", case, expect, finding, config.backend)
        folder, kind = corpus, "FOUND"
        try:
            doubt = (confirm(pending, signature, config.backend, config.case_timeout,
                             self.interrupt.is_set) if config.confirm else None)
        except Interrupted:
            self.stats.interrupted = True
            self.interrupt.set()  # the findings still to confirm are written unconfirmed
            doubt, folder, kind = "the run was interrupted before it could confirm this", \
                corpus / "unconfirmed", "UNCONFIRMED"
        else:
            if doubt is not None:
                folder, kind = corpus / "quarantine", "FLAKY (quarantined)"
        if doubt is not None:
            expect = replace(expect, outcome="flaky", note=doubt)
        final = write_entry(folder, case, expect, finding, config.backend, issue=True)
        if kind.startswith("FLAKY"):
            with self.lock:
                self.flaky_seen[identity.key] += 1
                if self.flaky_seen[identity.key] < MAX_FLAKY:  # a reproducible one may come
                    self.known = [b for b in self.known if b.identity != identity]
        else:
            with self.lock:  # its later cases are counted on it, as on any known bug
                self.known = [KnownBug(final.name, b.identity) if b.identity == identity
                              else b for b in self.known]
        for p in (pending, pending.with_suffix(".py"), pending.with_suffix(".md")):
            p.unlink(missing_ok=True)
        item = {"signature": signature, "key": identity.key,
                "features": finding["features"], "resembles": resembles,
                "case": str(final), "found_at_s": finding["found_at_s"],
                "examples_at": finding["examples_at"], "explanation": verdict.explain()}
        with self.lock:
            {"FOUND": self.stats.findings, "UNCONFIRMED": self.stats.unconfirmed}.get(
                kind, self.stats.flaky).append(item)
            like = f"\n  resembles the known {', '.join(resembles)}" if resembles else ""
            print(f"\n{kind} {signature}\n  {final}{like}\n  " +
                  verdict.explain().replace("\n", "\n  "), flush=True)
        if kind == "FOUND" and config.stop_when is not None and config.stop_when(case):
            self.stop.set()

    def run(self) -> RunStats:
        searches = [Search(self, i) for i in range(self.config.workers)]
        threads = [threading.Thread(target=s.run, name=f"search-{s.index}", daemon=True)
                   for s in searches]
        for t in threads:
            t.start()
        try:
            while any(t.is_alive() for t in threads):
                time.sleep(0.5)  # not join(): Ctrl-C inside Thread.join can break the thread
                self._progress()
        except KeyboardInterrupt:
            self.stats.interrupted = True
            self.interrupt.set()
            self.stop.set()
            # If stopping hangs anyway, say where: every thread's stack, on stderr.
            faulthandler.dump_traceback_later(STOP_GRACE_S + 15, exit=False)
            deadline = time.monotonic() + STOP_GRACE_S
            for t in threads:  # a search stuck past the grace period is abandoned (daemon)
                t.join(timeout=max(0.1, deadline - time.monotonic()))
        self.stats.restarts = sum(s.worker.restarts for s in searches)
        for search in searches:
            search.worker.close()
        for key, (case, verdict) in list(self.best.items()):
            self.record(case, verdict, key)  # found but not yet fully shrunk
        errors = [s.error for s in searches if s.error is not None]
        if self.config.progress:
            sys.stderr.write("\n")
        if self.config.report is not None:
            atomic_write(self.config.report, json.dumps(self.report(), indent=1) + "\n")
        faulthandler.cancel_dump_traceback_later()
        if errors:
            raise errors[0]
        return self.stats

    def _progress(self) -> None:
        if not self.config.progress:
            return
        s = self.stats
        sys.stderr.write(f"\r{s.examples} cases ({s.programs} programs), "
                         f"{s.examples / max(s.elapsed, 1e-9):.1f}/s, {len(s.findings)} "
                         f"findings, {len(s.flaky)} flaky, {s.elapsed:.0f}s of "
                         f"{self.config.time_budget:.0f}s   ")
        sys.stderr.flush()

    def rewrite_coverage(self) -> dict[str, Any]:
        """Per pattern family of hand-written programs: how many Inductor rewrote into SDPA.
        A family the pass never rewrites tests only Inductor's plain lowering."""
        s = self.stats
        families = {label: {"programs": n, "rewritten": s.rewrite_hits[label],
                            "share": round(s.rewrite_hits[label] / n, 3)}
                    for label, n in sorted(s.rewrite_programs.items())}
        return {"by_family": families, "patterns": dict(s.rewrite_patterns.most_common())}

    def kernel_coverage(self) -> dict[str, dict[str, int]]:
        """Per SDPA kernel eager ran: cases that ran it, and findings whose case ran it."""
        s = self.stats
        found = Counter(k for f in s.findings for k in f.get("kernels", ()))
        return {k: {"cases": n, "findings": found[k]} for k, n in s.kernel_cases.most_common()}

    def known_hits(self) -> dict[str, dict[str, Any]]:
        """Per known bug (corpus entry, or this run's finding): the cases that showed it,
        the signatures it showed under, and the smallest such case."""
        with self.lock:
            return {entry: {"cases": h["cases"], "signatures": sorted(h["signatures"]),
                            "sample": case_to_dict(h["sample"])}
                    for entry, h in sorted(self.stats.known_hits.items())}

    def report(self) -> dict[str, Any]:
        s = self.stats
        total = max(s.elapsed, 1e-9)
        busy = total * self.config.workers  # each search thread's wall time
        measured = sum(s.timings.phases.values())
        shares = {k: round(v / busy, 4) for k, v in sorted(s.timings.phases.items())}
        # The rest of each search thread's time is Hypothesis's own: drawing and shrinking.
        shares["generation"] = round(max(0.0, busy - measured) / busy, 4)
        return {"backend": self.config.backend, "device": self.config.device,
                "torch": torch.__version__, "seed": self.config.seed,
                "workers": self.config.workers, "examples": s.examples,
                "programs": s.programs, "elapsed_s": round(s.elapsed, 2),
                "cases_per_s": round(s.examples / total, 3),
                "programs_per_s": round(s.programs / total, 3),
                "worker_restarts": s.restarts, "interrupted": s.interrupted,
                "checks": dict(s.checks), "failed_checks": dict(s.failed_checks),
                "first_failed_at": s.first_failed_at, "warm_only": dict(s.warm_only),
                "time_share": shares, "rewrites": self.rewrite_coverage(),
                "kernels": self.kernel_coverage(), "excused": dict(s.excused),
                "error_ratio_max": dict(sorted(s.worst_ratio.items())),
                "known_hits": self.known_hits(),
                "failures": s.findings, "flaky": s.flaky,
                "unconfirmed": s.unconfirmed}


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


class Search:
    """One Hypothesis loop over one worker process."""

    def __init__(self, fuzzer: Fuzzer, index: int) -> None:
        self.fuzzer = fuzzer
        self.index = index
        self.worker = Worker(fuzzer.config.case_timeout, device=fuzzer.config.device)
        self.database = DirectoryBasedExampleDatabase(str(fuzzer.database_path))
        self.error: BaseException | None = None
        self.variants = VariantPolicy(fuzzer.config.variants)

    def check(self, case: Case) -> None:
        """The property: a case (and its seed variants) passes unless it fails in a way
        no known bug covers."""
        fuzzer = self.fuzzer
        if fuzzer.stopping() or fuzzer.over_budget():
            raise BudgetSpent
        t0 = time.perf_counter()
        batch = self.variants.batch(case)
        results = list(self.worker.judge(fuzzer.config.backend, batch, fuzzer.stopping))
        fuzzer.account(results, time.perf_counter() - t0)
        self.variants.learn(results)
        new = fuzzer.first_new(results, self.index)
        if new is not None:
            key, result = new
            self.variants.freeze(results.index(result))
            raise finding_type(key)(result.case, result.verdict)

    def _round(self, round_no: int) -> None:
        config = self.fuzzer.config

        @settings(max_examples=10**6, deadline=None, database=self.database,
                  print_blob=False, report_multiple_bugs=True,
                  suppress_health_check=list(HealthCheck))
        @seed(config.seed * 1_000_003 + round_no * 1_009 + self.index)
        @given(space(config.space, config.backend, config.device))
        def sdpa_fuzz_property(case: Case) -> None:
            self.check(case)

        sdpa_fuzz_property()

    def run(self) -> None:
        fuzzer, round_no = self.fuzzer, 0
        try:
            while not (fuzzer.stopping() or fuzzer.over_budget()):
                self.variants.thaw()
                try:
                    self._round(round_no)
                    break
                except (BudgetSpent, Interrupted):
                    break
                except (Finding, BaseExceptionGroup) as exc:
                    for finding in _findings(exc):
                        fuzzer.record(finding.case, finding.verdict, finding.key)
                round_no += 1
        except Interrupted:
            pass
        except BaseException as exc:  # a harness bug: stop the whole run, and say so
            self.error = exc
            fuzzer.stop.set()


def _findings(exc: BaseException) -> list[Finding]:
    if isinstance(exc, Finding):
        return [exc]
    if isinstance(exc, BaseExceptionGroup):
        found = [f for e in exc.exceptions for f in _findings(e)]
        if len(found) == len(exc.exceptions):
            return found
    raise exc
