"""Replaying corpus entries: does each case still show what it records?

A known failure that starts passing is news (a torch fix, or a changed backend), so it is
reported like a strict xfail rather than silently accepted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import torch

from fuzz.corpus import Entry, KnownBug, entry_identities
from fuzz.identity import features
from fuzz.oracle import Verdict
from fuzz.worker import Worker


@dataclass(frozen=True)
class ReplayResult:
    entry: Entry
    verdict: Verdict
    status: str  # ok | known | unexpected-failure | fixed | different-failure

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "known")

    def describe(self) -> str:
        expect = self.entry.expect
        head = f"{self.entry.path}: {self.status}"
        if self.status == "unexpected-failure":
            return f"{head}\n{self.verdict.explain()}"
        if self.status == "fixed":
            return (f"{head}: known failure {expect.signature} no longer fails on torch "
                    f"{torch.__version__}; update its expectation to pass")
        if self.status == "different-failure":
            return f"{head}: expected {expect.signature}, got\n{self.verdict.explain()}"
        if self.status == "known":
            return (f"{head}: fails on this backend only as known bugs do:\n"
                    f"{self.verdict.explain()}")
        return head


def replay_entry(entry: Entry, worker: Worker, backend: str | None = None,
                 device: str | None = None, known: Sequence[KnownBug] = (),
                 stopping: Callable[[], bool] = lambda: False) -> ReplayResult:
    """Run the entry's case in `worker` (so a recorded crash or hang is observed, not
    suffered) and hold it to its expectation.

    On the backend and device it was found with, in its torch range, a known failure must
    still fail the same way (a pass is `fixed`). Anywhere else the case must pass, or fail
    only with failures that `known` bugs cover (`known`): a backend that shares a layer
    with a recorded bug may meet it, or a bug of the same layer, in any entry.
    `stopping()` abandons the case (`Worker.judge`)."""
    case = entry.case if device is None else replace(entry.case, device=device)
    backend = backend or case.compile.backend
    verdict = list(worker.judge(backend, [case], stopping))[0].verdict
    expect = entry.expect
    recorded = (expect.outcome == "known-failure" and expect.applies_to(torch.__version__)
                and backend == entry.case.compile.backend and case.device == entry.case.device)
    if recorded:
        keys = {i.key for i in entry_identities(entry)}
        shown = any(f.signature == expect.signature or f.key in keys for f in verdict.failures)
        status = "fixed" if verdict.ok else "ok" if shown else "different-failure"
    elif verdict.ok:
        status = "ok"
    else:
        found = features(case)
        covered = all(any(b.identity.covers(f.key, found) for b in known)
                      for f in verdict.failures)
        status = "known" if covered else "unexpected-failure"
    return ReplayResult(entry, verdict, status)
