"""The public API, for properties of one's own: the case strategies, and `check_case`,
which runs one case eagerly, in float64 and compiled, in a worker process, and judges it.

    from hypothesis import given
    from fuzz.api import cases, check_case

    @given(case=cases())
    def test_my_backend_matches_eager(case):
        check_case(case, "mypkg.compilers:my_backend")

A divergence raises `Divergence` with the verdict, the case's JSON and its minimal repro,
unless a known bug of the packaged corpus covers it (the rule of `sdpa-fuzz run --known`).
A crash or a hang of the backend is a failure of that case; the next case gets a new
worker.
"""

from __future__ import annotations

import atexit
import json
from dataclasses import replace
from functools import cache
from pathlib import Path

from fuzz.case import Case
from fuzz.caseio import case_to_json
from fuzz.corpus import known_bugs_for, packaged_corpus
from fuzz.feedback import steer
from fuzz.identity import features
from fuzz.minimal import minimal_script, target_of
from fuzz.oracle import Failure, Verdict
from fuzz.worker import Worker
from strategies import cases, hand_attention_cases, model_attention_cases, module_cases

DEFAULT_TIMEOUT_S = 300.0


class Divergence(AssertionError):
    """Compiled and eager differ on a case in a way no known bug covers."""

    def __init__(self, case: Case, verdict: Verdict, new: list[Failure]) -> None:
        script = minimal_script(case, target_of(new[0], verdict.bounds),
                                case.compile.backend)
        text = json.dumps(json.loads(case_to_json(case)), separators=(",", ":"))
        super().__init__(f"{verdict.explain()}\n\ncase JSON (`sdpa-fuzz repro --full` on it "
                         f"gives the full checker):\n{text}\n\nminimal repro:\n{script}")
        self.case, self.verdict, self.new = case, verdict, tuple(new)


_WORKERS: dict[tuple[str, float], Worker] = {}


def close_workers() -> None:
    """Stop the worker processes `judge_case` started (also done at exit)."""
    while _WORKERS:
        _WORKERS.popitem()[1].close()


def _worker(device: str, timeout: float) -> Worker:
    if not _WORKERS:
        atexit.register(close_workers)
    if (device, timeout) not in _WORKERS:
        _WORKERS[device, timeout] = Worker(timeout, device=device)
    return _WORKERS[device, timeout]


def judge_case(case: Case, backend: str, timeout: float = DEFAULT_TIMEOUT_S) -> Verdict:
    """`case`, compiled with `backend`, run and judged in a worker process. A crash is a
    `crash` failure, a case running past `timeout` seconds a `timeout` one."""
    case = replace(case, compile=replace(case.compile, backend=backend))
    (result,) = _worker(case.device, timeout).judge(backend, [case])
    return result.verdict


@cache
def check_case(case: Case, backend: str, timeout: float = DEFAULT_TIMEOUT_S,
               known: tuple[Path, ...] | None = None) -> Verdict:
    """Judge `case` as `judge_case` does; raise `Divergence` for failures that no known bug
    of the `known` corpora (default: the packaged one; `()` for none) covers."""
    __tracebackhide__ = True  # pytest: the failure is the case's, not this function's
    verdict = judge_case(case, backend, timeout)
    steer(case, [verdict])
    corpora = (packaged_corpus(),) if known is None else known
    found = features(case)
    known = known_bugs_for(backend, corpora)
    new = [f for f in verdict.own_failures
           if not any(b.identity.covers(f.key, found) for b in known)]
    if new:
        raise Divergence(replace(case, compile=replace(case.compile, backend=backend)),
                         verdict, new)
    return verdict


__all__ = ["Divergence", "cases", "check_case", "close_workers", "hand_attention_cases",
           "judge_case", "model_attention_cases", "module_cases"]
