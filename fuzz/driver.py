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
import hashlib
import json
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch
from hypothesis import HealthCheck, given, seed, settings
from hypothesis.database import (DirectoryBasedExampleDatabase, ExampleDatabase,
                                 MultiplexedDatabase)

from fuzz.campaign import LEASE_S, Campaign, CampaignFinding
from fuzz.case import Case
from fuzz.caseio import case_to_json
from fuzz.confirm import OutOfTime, confirm
from fuzz.corpus import (KnownBug, atomic_write, claim, known_bugs_for, prune_claims,
                         quarantined, release)
from fuzz.defaults import MAX_EXAMPLES, PROBES, TIME_BUDGET_S
from fuzz.feedback import steer
from fuzz.generation import Stretch, stretch
from fuzz.identity import Identity, features, probed
from fuzz.known import THIS_RUN, KnownBugs, covering
from fuzz.oracle import Failure, Verdict
from fuzz.report import RunStats, progress_line, run_report, smaller
from fuzz.settle import FLAKY, FOUND, UNCONFIRMED, Unconfirmed, announcement, facts, settle
from fuzz.variants import VariantPolicy
from fuzz.version import tool_version
from fuzz.worker import CaseResult, Interrupted, Worker
from strategies import PLAIN_SPACES, space

STOP_GRACE_S = 20.0  # after Ctrl-C, how long the searches get to stop
REPORT_EVERY_S = 60.0  # a running report and, off a terminal, a progress line
HEARTBEAT_S = 10.0  # a campaign's claims renewed, its findings read, this run's counts sent
# The adaptive case timeout: this multiple of the slowest case seen, never under the floor
# (a fresh worker's first compile, on a loaded machine).
TIMEOUT_MULTIPLE, TIMEOUT_FLOOR_S = 10.0, 30.0
# While Hypothesis shrinks a hang, a step that still hangs is cut at this multiple of the
# slowest case: the finding is confirmed at the full timeout afterwards.
HANG_SHRINK_MULTIPLE = 2.0
REPORT_SCHEMA = 2


class BudgetSpent(BaseException):
    """Ends a Hypothesis run from inside the test. A BaseException, so that Hypothesis
    propagates it at once instead of treating it as a failure to shrink."""


class StretchEnd(BaseException):
    """Ends a stretch of a search (`fuzz.generation`), as BudgetSpent ends its run. Counted
    here rather than by `max_examples`, which also bounds how many saved examples
    Hypothesis replays from its database (a tenth of it)."""


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
    time_budget: float = TIME_BUDGET_S
    max_examples: int = MAX_EXAMPLES
    seed: int = 0
    corpus: Path = Path("corpus")
    database: Path | None = None  # default: <corpus>/.hypothesis
    campaign: str | None = None  # redis:// URL of a campaign shared across machines
    lease_s: float = LEASE_S  # how long a campaign claim outlives a dead machine
    report: Path | None = None
    confirm: bool = True
    progress: bool = False
    workers: int = 1
    case_timeout: float | None = None  # None: adaptive (TIMEOUT_MULTIPLE, TIMEOUT_FLOOR_S)
    confirm_budget: float | None = None  # None: confirm_budget_default(time_budget)
    variants: int | None = None  # seed variants per compiled program; None: adaptive
    known: tuple[Path, ...] = ()  # other corpora whose bugs are not reported again
    probes: int = PROBES  # cases judged per new finding to widen its identity
    stop_when: Callable[[Case], bool] | None = None  # stop after a finding whose case holds
    stop_after: int | None = None  # stop after this many new findings, confirmed
    arguments: tuple[str, ...] = ()  # the command line, for the report


def confirm_budget_default(time_budget: float) -> float:
    """Confirmation's own time, after which the run ends whatever is left: a quarter of the
    search's, and at least a minute (a confirmation starts two fresh processes)."""
    return max(60.0, 0.25 * time_budget)


class Fuzzer:
    """One run: search threads over worker processes, sharing what is known and found."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        prune_claims(config.corpus)
        self.campaign = Campaign(config.campaign, config.lease_s) if config.campaign else None
        self.stats = RunStats()
        self.known = KnownBugs(self._corpus_bugs(), quarantined(config.corpus))
        self.lock = threading.RLock()
        self.stop = threading.Event()
        self.interrupt = threading.Event()
        self.best: dict[str, tuple[Case, Verdict]] = {}  # found, not yet recorded
        self.owner: dict[str, int] = {}  # which search is shrinking a key
        # key -> (cases, programs) judged when it first failed new
        self.first_seen: dict[str, tuple[int, int]] = {}
        self.passed: set[bytes] = set()  # digests of the cases judged whole and passed
        self.database_path = config.database or config.corpus / ".hypothesis"
        self._beat = 0.0  # when the campaign last heard from this run
        self._reported = time.monotonic()  # when the report was last written
        self.confirm_budget = (config.confirm_budget if config.confirm_budget is not None
                               else confirm_budget_default(config.time_budget))
        # The run's end, whatever is still running: a hard bound on its wall time.
        self.deadline = self.stats.started + config.time_budget + self.confirm_budget
        self.search_s: float | None = None  # when the searches ended
        # What ended the run: its budget, or first stop-after, stop-when, interrupt (Ctrl-C,
        # SIGTERM), store-lost (the campaign's Redis), error (sdpa-fuzz's own).
        self.ended_by = "budget"

    def case_timeout(self) -> float:
        """`--case-timeout`, or TIMEOUT_MULTIPLE times the slowest case so far, with a
        floor: a hang costs a multiple of a real case, not a fixed five minutes."""
        if self.config.case_timeout is not None:
            return self.config.case_timeout
        return max(TIMEOUT_FLOOR_S, TIMEOUT_MULTIPLE * self.stats.slowest)

    def hang_shrink_timeout(self) -> float:
        """The case timeout while a hang is shrunk: each step that still hangs costs this,
        not `case_timeout` (10 times the slowest case, 344 s in a 30-minute Inductor run).
        A step merely slow past it shrinks the finding towards a case that confirmation,
        at the full timeout, then finds no hang in: reported unconfirmed, never lost."""
        return min(self.case_timeout(),
                   max(TIMEOUT_FLOOR_S, HANG_SHRINK_MULTIPLE * self.stats.slowest))

    def past_deadline(self) -> bool:
        return self.stopping() or time.monotonic() > self.deadline

    def _corpus_bugs(self) -> list[KnownBug]:
        config = self.config
        return known_bugs_for(config.backend, (config.corpus, *config.known)) + \
            self._campaign_bugs()

    def _campaign_bugs(self) -> list[KnownBug]:
        """The bugs the campaign's machines confirmed (this one's among them)."""
        return [KnownBug(f"campaign:{f.machine}:{Path(f.case).name}", f.identity)
                for f in (self.campaign.findings() if self.campaign else [])]

    def examples(self) -> ExampleDatabase:
        """Hypothesis's database: the local folder, and the campaign's when there is one."""
        local = DirectoryBasedExampleDatabase(str(self.database_path))
        return MultiplexedDatabase(local, self.campaign.examples()) if self.campaign else local

    def _claim(self, name: str) -> bool:
        return self.campaign.claim(name) if self.campaign else claim(self.config.corpus, name)

    def _release(self, name: str) -> None:
        if self.campaign:
            self.campaign.release(name)
        else:
            release(self.config.corpus, name)

    def _heartbeat(self, final: bool = False) -> None:
        """Tell the campaign where this run is, renew its claims, and learn the bugs the
        other machines confirmed meanwhile (their cases are then counted as known)."""
        if self.campaign is None or not (final or time.monotonic() - self._beat > HEARTBEAT_S):
            return
        self._beat = time.monotonic()
        s, config = self.stats, self.config
        self.campaign.heartbeat({"backend": config.backend, "space": config.space,
                                 "corpus": str(config.corpus), "cases": s.examples,
                                 "programs": s.programs, "findings": len(s.findings),
                                 "elapsed_s": round(s.elapsed, 1), "final": final})
        elsewhere = self._campaign_bugs()
        with self.lock:
            self.known.learn(elsewhere)
        if self.campaign.failure is not None:
            self.ended_by = "store-lost"
            self.stop.set()  # the run ends; what it holds is written locally

    def stopping(self) -> bool:
        return self.stop.is_set()

    def over_budget(self) -> bool:
        return (self.stats.elapsed > self.config.time_budget
                or self.stats.examples >= self.config.max_examples)

    def account(self, results: list[CaseResult], seconds: float, shrinking: bool) -> None:
        with self.lock:
            self.stats.account(results, seconds, shrinking)

    def unknown_failures(self, results: list[CaseResult]) -> list[tuple[str, CaseResult]]:
        """The failures of `results` that no known bug covers, in order, each with the
        result it came from; those a known bug covers are counted on it."""
        with self.lock:
            unknown = []
            for position, r in enumerate(results, 1 - len(results)):
                found = features(r.case) if r.verdict.failures else frozenset()
                for failure in r.verdict.own_failures:
                    bug = self.known.covering(failure.key, found)
                    if bug is not None:
                        self.stats.hit(bug.entry, r.case, failure.signature)
                        continue
                    # the case's own place in the run, not its batch's last
                    self.first_seen.setdefault(failure.key, (self.stats.examples + position,
                                                             self.stats.programs))
                    unknown.append((failure.key, r))
            return unknown

    def claim(self, key: str, result: CaseResult, search: int) -> bool:
        """Whether `search` may shrink `key` (no other search is shrinking it); if so,
        remembers the smallest case seen for it."""
        with self.lock:
            if self.owner.setdefault(key, search) != search:
                return False
            if smaller(result.case, self.best.get(key, (None,))[0]):
                self.best[key] = (result.case, result.verdict)
            return True

    def unclaim(self, key: str, search: int) -> None:
        """Give up `key`: a search that claimed it found it known after all."""
        with self.lock:
            self.best.pop(key, None)
            if self.owner.get(key) == search:
                del self.owner[key]

    def counted_as_known(self, key: str, case: Case, signature: str) -> bool:
        """Whether a known bug covers a failure of `key` on `case`; counted on it if so."""
        with self.lock:
            bug = self.known.covering(key, features(case))
            if bug is not None:
                self.stats.hit(bug.entry, case, signature)
            return bug is not None

    def record(self, case: Case, verdict: Verdict, key: str, shrunk: bool = True,
               alike: Callable[[Case], Verdict | None] | None = None,
               seen_as: str | None = None) -> None:
        """Probe its knobs (`alike` judges a probe: its verdict where it fails with `key`;
        a crash or hang is not probed, each probe would cost a worker), confirm in a fresh
        process, then write to the corpus (or quarantine) and only then report (`shrunk`:
        False for a case the run ended before Hypothesis finished shrinking, which its
        report says). A bug already in the corpus (another run may have saved it meanwhile)
        or claimed by a concurrent run is dropped. `seen_as`: the key Hypothesis shrank,
        where its failing call alone failed under another."""
        failure = next(f for f in verdict.own_failures if f.key == key)
        with self.lock:
            self.best.pop(key, None)
            # Probing may set the case plain, and its key with it: the first sighting is
            # that of the key the search met.
            first = min(self.first_seen.get(k, (self.stats.examples, self.stats.programs))
                        for k in {seen_as or key, key})
            if self.counted_as_known(key, case, failure.signature):
                return
        identity = Identity(key, features(case))
        if alike is not None and failure.where != "worker" and self.config.probes:
            t0 = time.perf_counter()
            case, verdict, identity = probed(case, verdict, key, alike, self.config.probes)
            failure = next(f for f in verdict.own_failures if f.key == key)
            with self.lock:
                self.stats.timings.add("probe", time.perf_counter() - t0)
        signature = failure.signature
        with self.lock:
            if self.counted_as_known(key, case, signature):  # a plainer case may be known
                return
            self.known.learn([KnownBug(THIS_RUN, identity)])
        # Claimed first, then checked: a machine that published it and released its claim
        # between a check and a claim would otherwise be reported twice.
        if not self._claim(identity.name):
            return
        if covering(self._corpus_bugs(), key, identity.features) is not None:
            self._release(identity.name)
            return
        t0 = time.perf_counter()
        try:
            self._confirm_and_write(case, verdict, identity, failure, shrunk, first)
        finally:
            self._release(identity.name)
            with self.lock:
                self.stats.timings.add("confirm", time.perf_counter() - t0)

    def _confirm_and_write(self, case: Case, verdict: Verdict, identity: Identity,
                           failure: Failure, shrunk: bool, first_seen_at: tuple[int, int]
                           ) -> None:
        config = self.config
        with self.lock:
            finding = facts(case, verdict, identity, failure,
                            self.known.resembling(identity.key), self.stats.elapsed,
                            first_seen_at,
                            self.stats.examples, shrunk, config.backend)
        settled = settle(config.corpus, case, finding, config.backend,
                         lambda pending: self._confirmation(pending, failure))
        with self.lock:
            if settled.kind == FLAKY:
                self.known.flaky(identity)
            else:  # its later cases are counted on it, as on any known bug
                self.known.written(identity, settled.path.name)
            if settled.kind == FOUND and self.campaign is not None:  # before its claim goes
                self.campaign.publish(CampaignFinding(identity, failure.signature,
                                                      self.campaign.machine,
                                                      str(settled.path), time.time()))
            {FOUND: self.stats.findings, UNCONFIRMED: self.stats.unconfirmed,
             FLAKY: self.stats.flaky}[settled.kind].append(settled.item)
            print(announcement(settled), flush=True)
        if settled.kind == FOUND and not self.stop.is_set():
            if config.stop_when is not None and config.stop_when(case):
                self.ended_by = "stop-when"
            elif len(self.stats.findings) == config.stop_after:
                self.ended_by = "stop-after"
            else:
                return
            self.stop.set()

    def _confirmation(self, pending: Path, failure: Failure) -> str | None:
        """Confirm a pending entry in a fresh process: None where it reproduced, else why
        not. Unconfirmed where the run ends first (an interrupt during confirmation ends
        the run: the findings still to confirm are written unconfirmed)."""
        if self.ended_by in ("stop-after", "stop-when"):  # the user asked to end here
            raise Unconfirmed("the run ended at its --stop-after finding before it could "
                              "confirm this")
        if not self.config.confirm:
            return None
        try:
            return confirm(pending, failure, self.config.backend,
                           self.case_timeout(), self.interrupt.is_set, self.deadline)
        except OutOfTime:
            raise Unconfirmed("the run's time (--time-budget, then --confirm-budget) ran out "
                              "before it could confirm this") from None
        except Interrupted:
            self.stats.interrupted, self.ended_by = True, "interrupt"
            self.interrupt.set()
            raise Unconfirmed("the run was interrupted before it could confirm this") from None

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
                self._heartbeat()
        except KeyboardInterrupt:
            self.stats.interrupted, self.ended_by = True, "interrupt"
            self.interrupt.set()
            self.stop.set()
            # If stopping hangs anyway, say where: every thread's stack, on stderr.
            faulthandler.dump_traceback_later(STOP_GRACE_S + 15, exit=False)
            deadline = time.monotonic() + STOP_GRACE_S
            for t in threads:  # a search stuck past the grace period is abandoned (daemon)
                t.join(timeout=max(0.1, deadline - time.monotonic()))
        self.search_s = self.stats.elapsed
        self.stats.restarts = sum(s.worker.restarts for s in searches)
        for search in searches:
            search.worker.close()
        for key, (case, verdict) in list(self.best.items()):
            self.record(case, verdict, key, shrunk=False)  # the budget cut shrinking short
        errors = [s.error for s in searches if s.error is not None]
        if self.config.progress:
            sys.stderr.write("\n")
        self._heartbeat(final=True)
        if self.config.report is not None:
            atomic_write(self.config.report, json.dumps(self.report(), indent=1) + "\n")
        faulthandler.cancel_dump_traceback_later()
        if self.campaign is not None and self.campaign.failure is not None:
            raise self.campaign.error()
        if errors:
            raise errors[0]
        return self.stats

    def _progress(self) -> None:
        """On a terminal, the progress line, redrawn; off one (a batch job's log), a line
        and the report rewritten every REPORT_EVERY_S, so a long run shows where it is."""
        if self.config.progress:
            sys.stderr.write("\r" + progress_line(self.stats, self.config.time_budget))
            sys.stderr.flush()
        if time.monotonic() - self._reported < REPORT_EVERY_S:
            return
        self._reported = time.monotonic()
        if not self.config.progress:
            print(progress_line(self.stats, self.config.time_budget).rstrip(), file=sys.stderr,
                  flush=True)
        if self.config.report is not None:
            atomic_write(self.config.report,
                         json.dumps(self.report(final=False), indent=1) + "\n")

    def report(self, final: bool = True) -> dict[str, Any]:
        """The run's report; `final` False while the run goes on."""
        config, stats = self.config, self.stats
        with self.lock:
            found = [f["found_at_s"] for f in stats.findings + stats.unconfirmed]
            campaign = self.campaign
            return {"schema": REPORT_SCHEMA, "sdpa_fuzz": tool_version(),
                    "arguments": list(config.arguments), "final": final,
                    "space": config.space,
                    "campaign": None if campaign is None else {
                        "db": campaign.url, "machine": campaign.machine,
                        "error": None if campaign.failure is None else repr(campaign.failure)},
                    "torch_build": {"git": torch.version.git_version,
                                    "cuda": torch.version.cuda, "debug": torch.version.debug},
                    "time": {"budget_s": config.time_budget,
                             "confirm_budget_s": self.confirm_budget,
                             "search_s": round(self.search_s or stats.elapsed, 2),
                             "confirm_s": round(stats.timings.phases.get("confirm", 0.0), 2),
                             "wall_s": round(stats.elapsed, 2),
                             "last_find_s": max(found, default=None),
                             "case_timeout_s": round(self.case_timeout(), 1),
                             "case_timeout": "fixed" if config.case_timeout else "adaptive",
                             "ended_by": self.ended_by},
                    **run_report(stats, config.backend, config.device, config.seed,
                                 config.workers)}


class Search:
    """One Hypothesis loop over one worker process."""

    def __init__(self, fuzzer: Fuzzer, index: int) -> None:
        self.fuzzer = fuzzer
        self.index = index
        self.worker = Worker(fuzzer.case_timeout(), device=fuzzer.config.device)
        self.database = fuzzer.examples()
        self.error: BaseException | None = None
        self.variants = VariantPolicy(fuzzer.config.variants)
        self.shrinking = False  # a finding of this round was raised: Hypothesis shrinks it
        self.hang = False  # ... and it is a hang
        self.drawn = 0  # programs this round drew before it found anything
        self.stretch: Stretch = stretch(0, fuzzer.config.space in PLAIN_SPACES)

    def check(self, case: Case) -> None:
        """The property: a case (and its seed variants) passes unless it fails in a way
        no known bug covers. A case this run has judged and passed passes unjudged."""
        fuzzer = self.fuzzer
        if fuzzer.stopping() or fuzzer.over_budget():
            raise BudgetSpent
        digest = case_digest(case)
        if digest in fuzzer.passed:
            return
        if not self.shrinking:
            self.drawn += 1
            if self.drawn > self.stretch.programs:
                raise StretchEnd
        t0 = time.perf_counter()
        batch = [case] if self.stretch.plain else self.variants.batch(case)
        self.worker.case_timeout = fuzzer.hang_shrink_timeout() if self.hang \
            else fuzzer.case_timeout()
        results = list(self.worker.judge(fuzzer.config.backend, batch, fuzzer.past_deadline))
        fuzzer.account(results, time.perf_counter() - t0, self.shrinking)
        if all(r.verdict.ok for r in results):
            fuzzer.passed.add(digest)
        steer(case, [r.verdict for r in results])
        self.variants.learn(results)
        for key, result in fuzzer.unknown_failures(results):
            if not fuzzer.claim(key, result, self.index):
                continue
            if not self.shrinking and self._known_alone(key, result):
                fuzzer.unclaim(key, self.index)
                continue
            self.variants.freeze(results.index(result))
            self.shrinking = True
            self.hang = self.hang or key.startswith("timeout:")
            raise finding_type(key)(result.case, result.verdict)

    def _judge_one(self, case: Case) -> Verdict:
        t0 = time.perf_counter()
        results = list(self.worker.judge(self.fuzzer.config.backend, [case],
                                         self.fuzzer.past_deadline))
        self.fuzzer.account(results, time.perf_counter() - t0, self.shrinking)
        return results[0].verdict

    def _known_alone(self, key: str, result: CaseResult) -> bool:
        """Whether a failure first seen in a later call is, as its failing call alone, a
        known bug; counted on that bug if so. Shrinking cannot reach that form
        (`failing_call_alone`): without this extra case, a search shrank finding 10's
        later-call form for the rest of its three minutes."""
        failure = next(f for f in result.verdict.own_failures if f.key == key)
        alone = failing_call_alone(result.case, failure, self._judge_one)
        if alone is None:
            return False
        case, _, same = alone
        return self.fuzzer.counted_as_known(same.key, case, same.signature)

    def alone(self, finding: Finding) -> tuple[Case, Verdict, str]:
        """The finding as its failing call alone, where that fails alone too."""
        failure = next(f for f in finding.verdict.own_failures if f.key == finding.key)
        alone = failing_call_alone(finding.case, failure, self._judge_one)
        if alone is None:
            return finding.case, finding.verdict, finding.key
        case, verdict, same = alone
        return case, verdict, same.key

    def alike(self, key: str) -> Callable[[Case], Verdict | None]:
        """A probe's judge: its verdict where it fails with `key`, else None (and None
        for every probe once the run is past its deadline)."""
        backend, stopping = self.fuzzer.config.backend, self.fuzzer.past_deadline

        def judged(case: Case) -> Verdict | None:
            try:
                verdict = list(self.worker.judge(backend, [case], stopping))[0].verdict
            except Interrupted:
                return None
            return verdict if any(f.key == key for f in verdict.own_failures) else None
        return judged

    def _round(self, round_no: int) -> None:
        config, drawing = self.fuzzer.config, self.stretch

        def sdpa_fuzz_property(case: Case) -> None:
            self.check(case)

        # Plain stretches keep their examples under a database key of their own: replayed
        # through the other strategy, a saved choice sequence would be another case.
        sdpa_fuzz_property._hypothesis_internal_add_digest = b"plain" * drawing.plain
        prop = given(space(config.space, config.backend, config.device, drawing.plain))(
            sdpa_fuzz_property)
        prop = seed(config.seed * 1_000_003 + round_no * 1_009 + self.index)(prop)
        settings(max_examples=10**6, backend=drawing.backend, deadline=None,
                 database=self.database, print_blob=False, report_multiple_bugs=True,
                 suppress_health_check=list(HealthCheck))(prop)()

    def run(self) -> None:
        fuzzer, round_no, stretch_no = self.fuzzer, 0, 0
        try:
            while not (fuzzer.stopping() or fuzzer.over_budget()):
                self.variants.thaw()
                self.shrinking = self.hang = False
                self.drawn = 0
                self.stretch = stretch(stretch_no, fuzzer.config.space in PLAIN_SPACES)
                try:
                    self._round(round_no)
                except StretchEnd:  # a round that ends on a finding goes on in its stretch
                    stretch_no += 1
                except (BudgetSpent, Interrupted):
                    break
                except (Finding, BaseExceptionGroup) as exc:
                    for finding in _findings(exc):
                        case, verdict, key = self.alone(finding)
                        with fuzzer.lock:
                            fuzzer.best.pop(finding.key, None)
                        fuzzer.record(case, verdict, key, alike=self.alike(key),
                                      seen_as=finding.key)
                        with fuzzer.lock:  # the key's next new bug may come from any search
                            for shrunk_key in {finding.key, key}:
                                if fuzzer.owner.get(shrunk_key) == self.index:
                                    del fuzzer.owner[shrunk_key]
                round_no += 1
        except Interrupted:
            pass
        except BaseException as exc:  # a harness bug: stop the whole run, and say so
            self.error = exc
            fuzzer.ended_by = "error"
            fuzzer.stop.set()


def case_digest(case: Case) -> bytes:
    """What identifies a case among those a run has judged, in 16 bytes. Each round of
    Hypothesis, in every search, starts with the space's simplest case, and rounds restart
    after each finding: a case that passed once passes again (flaky outcomes aside), so it
    is not compiled and judged again."""
    return hashlib.blake2b(case_to_json(case).encode(), digest_size=16).digest()


def failing_call_alone(case: Case, failure: Failure, judged: Callable[[Case], Verdict]
                       ) -> tuple[Case, Verdict, Failure] | None:
    """A failure first seen in a later call, as a case of that call alone, if it fails
    alone too (same check, site and condition): then it never needed the calls before it.
    Shrinking cannot find this form, because dropping the earlier calls hands the failing
    call the first call's input values. A call of grown sizes stays as found."""
    call = case.calls[failure.call] if failure.call else None
    if call is None or call.grow:
        return None
    single = replace(case.reseeded(call.reseed), calls=(replace(call, reseed=0),))
    verdict = judged(single)
    same = next((f for f in verdict.own_failures
                 if f.symptom == failure.symptom and not f.call), None)
    return None if same is None else (single, verdict, same)


def _findings(exc: BaseException) -> list[Finding]:
    """The findings a search raised: one, or a group of them (Hypothesis reports several
    bugs at once), whose other members may be the search's own stops. Replaying the bugs
    it found, Hypothesis runs the property again, which raises BudgetSpent or Interrupted
    once the run is over: a 30-minute run ended in a traceback, its five findings
    grouped with a BudgetSpent. Anything else is a harness bug, raised."""
    if isinstance(exc, Finding):
        return [exc]
    if isinstance(exc, (BudgetSpent, Interrupted, StretchEnd)):
        return []
    if isinstance(exc, BaseExceptionGroup):
        return [f for e in exc.exceptions for f in _findings(e)]
    raise exc
