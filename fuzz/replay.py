"""Replaying corpus entries: does each case still show what it records?

A known failure that starts passing is news (a torch fix, or a changed backend), so it is
reported like a strict xfail rather than silently accepted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from fuzz.corpus import Entry, entry_identities
from fuzz.oracle import Verdict
from fuzz.worker import Worker


@dataclass(frozen=True)
class ReplayResult:
    entry: Entry
    verdict: Verdict
    status: str  # ok | unexpected-failure | fixed | different-failure

    @property
    def ok(self) -> bool:
        return self.status == "ok"

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
        return head


def replay_entry(entry: Entry, worker: Worker, backend: str | None = None,
                 device: str | None = None) -> ReplayResult:
    """Run the entry's case in `worker` (so a recorded crash or hang is observed, not
    suffered) and hold it to its expectation. A known failure is expected only on the
    backend and device it was found on and in its torch range; elsewhere, a pass."""
    case = entry.case if device is None else replace(entry.case, device=device)
    backend = backend or case.compile.backend
    verdict = list(worker.judge(backend, [case]))[0].verdict
    expect = entry.expect
    failing = (expect.outcome == "known-failure" and expect.applies_to(torch.__version__)
               and backend == entry.case.compile.backend and case.device == entry.case.device)
    if not failing:
        status = "ok" if verdict.ok else "unexpected-failure"
    elif verdict.ok:
        status = "fixed"
    else:
        keys = {i.key for i in entry_identities(entry)}
        shown = any(f.signature == expect.signature or f.key in keys for f in verdict.failures)
        status = "ok" if shown else "different-failure"
    return ReplayResult(entry, verdict, status)
