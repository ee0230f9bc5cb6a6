"""Cases run in worker processes, so that a crash or a hang in the code under test costs a
worker, never the driver.

Workers are forked from a server that has already imported torch and the harness, so a
replacement for a dead worker is ready in a fraction of a second instead of the seconds an
`import torch` takes; that is what makes shrinking a crash affordable. A worker reports
after every case, so a crash or a hang is charged to the exact case that was running.

A request is one case plus seed variants of it: cases that differ only in their input
values, run on the program compiled for the first (the compile is the expensive part, and
Dynamo's guards must accept the variants without compiling again; the oracle checks that).
"""

from __future__ import annotations

import faulthandler
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

from fuzz.case import MAX_CALLS, Case
from fuzz.oracle import Failure, Verdict

PRELOAD = ["fuzz.forkserver_signals", "torch", "torch._dynamo", "torch._inductor.compile_fx", "fuzz.execute",
           "fuzz.oracle"]
POLL_S = 0.1
# A spawned (CUDA) worker can still die of a Ctrl-C before its loop ignores the signal;
# the run hears that Ctrl-C within this long and is then stopping, not failing.
STOP_S = 2.0
# How long a new worker may take to be ready: a forked one imports what the forkserver did
# not preload, and the first one waits for the forkserver itself to import torch.
STARTUP_S = 600.0
LOG_TAIL = 1500
# A worker is replaced after this many requests: each program leaves its generated module
# and Dynamo's bookkeeping behind, and an overnight run must not grow without bound.
REQUESTS_PER_WORKER = 500
# multiprocessing polls every child of the process whenever one starts, and a forkserver
# child's exit status can be read only once: two threads racing for it turn a SIGSEGV
# into "exit 255". All process handling goes through this lock.
_PROCESSES = threading.Lock()


class HarnessError(RuntimeError):
    """The harness itself failed on a case: a bug in sdpa-fuzz, not in what it tests."""


class Interrupted(BaseException):
    """The run is stopping; the case in progress was abandoned, not judged."""


@dataclass(frozen=True)
class CaseResult:
    """One case as a worker judged it, with the seconds it spent in each phase.

    `warm_only` names failures a seed variant showed on the reused program that the same
    case compiled afresh does not show: those are not reported (a standalone case cannot
    reproduce them; the case model's later calls cover reuse), only counted.
    """

    case: Case
    verdict: Verdict
    phases: dict[str, float]
    warm_only: tuple[str, ...] = ()


def _context(device: str) -> multiprocessing.context.BaseContext:
    """Forked from a preloaded server on CPU. CUDA cannot be used in a process forked from
    one that initialized it, and importing Inductor on a GPU machine does; so CUDA workers
    are spawned, and each pays for its own `import torch`."""
    if device == "cuda":
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def _waited_for(condition: Callable[[], bool], timeout: float) -> bool:
    """Whether `condition` holds within `timeout` seconds."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(POLL_S)
    return True


def _serve(conn: Any, log_path: str, env: dict[str, str]) -> None:
    """The worker's loop: judge each case of each request, reporting after every case.

    Output of the code under test goes to the log, which is cleared before each case so
    that a crash report carries that case's own last words (faulthandler's traceback).
    `env` is set before anything compiles (the forkserver's environment is the one it
    started with).
    """
    os.environ.update(env)
    from fuzz.calls import DEVICE_ERROR_EXIT, DeviceError, is_device_error
    from fuzz.execute import Timings, run_case
    from fuzz.oracle import judge

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides when to stop
    log = open(log_path, "w+b", buffering=0)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    faulthandler.enable(file=log)
    conn.send(("ready", None))
    while True:
        request = conn.recv()
        if request is None:
            return
        backend, cases = request
        program = None
        for index, case in enumerate(cases):
            os.ftruncate(log.fileno(), 0)
            log.seek(0)
            timings = Timings()

            def judged(case: Case, warm):
                run = run_case(case, backend, timings, warm=warm)
                t0 = time.perf_counter()
                verdict = judge(case, run)
                timings.add("oracle", time.perf_counter() - t0)
                return run, verdict

            try:
                run, verdict = judged(case, program)
                warm_only: tuple[str, ...] = ()
                recompiled = program is not None and not verdict.ok
                if recompiled:
                    case, run, verdict, warm_only = _standalone(case, cases[0], index, verdict,
                                                                judged)
            except Exception as exc:
                if isinstance(exc, DeviceError) or is_device_error(exc):
                    traceback.print_exc()  # into the log: the crash report's last words
                    sys.stderr.flush()
                    os._exit(DEVICE_ERROR_EXIT)  # the CUDA context is unusable now
                conn.send(("error", traceback.format_exc()))
                break
            conn.send(("case", CaseResult(case, verdict, timings.phases, warm_only)))
            if recompiled or any(o.error is not None for o in run.eager + run.compiled):
                break  # a fresh compile reset Dynamo, so the warm program is gone; and
                # variants of an erroring program test nothing new
            program = run.program
        conn.send(("done", None))


def _standalone(variant: Case, base: Case, salt: int, warm: Verdict, judged):
    """A seed variant failed on the warm program: the standalone case that shows it. The
    variant compiled afresh if that fails the same way; else the base case followed by
    calls on the variant's values (what the warm run did, as one case); else nothing, and
    the signatures only the warm run showed."""
    seen = {f.signature: f for f in warm.failures}
    run, verdict = judged(variant, None)
    if set(seen) <= {f.signature for f in verdict.failures}:
        return variant, run, verdict, ()
    sequel = replace(base, calls=base.calls + tuple(replace(c, reseed=salt)
                                                    for c in base.calls))
    if len(sequel.calls) <= MAX_CALLS:
        run2, verdict2 = judged(sequel, None)
        if not verdict2.ok:  # shown in a later call, or tagged otherwise, is shown
            shown = {f.symptom for f in verdict2.failures}
            return sequel, run2, verdict2, tuple(sorted(
                s for s, f in seen.items() if f.symptom not in shown))
    return variant, run, verdict, tuple(sorted(seen - {f.signature for f in verdict.failures}))


def _process_failure(check: str, condition: str, detail: str) -> Verdict:
    return Verdict(failures=(Failure(check, "worker", condition, detail),), checked=(check,),
                   errors=())


def _signal_name(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            return f"signal-{-exitcode}"
    return f"exit-{exitcode}"


class Worker:
    """A handle on one worker process, replaced whenever it dies or is killed."""

    def __init__(self, case_timeout: float = 300.0, env: dict[str, str] | None = None,
                 device: str = "cpu") -> None:
        self.case_timeout = case_timeout
        self.device = device
        self.env = dict(env or {})
        self.restarts = 0
        self._served = 0
        self._dir = tempfile.mkdtemp(prefix="sdpa-fuzz-worker-")
        self._log = Path(self._dir) / "output.log"
        self._process: Any = None
        self._conn: Any = None

    def _start(self, stopping=lambda: False) -> None:
        """Start a worker and wait until it is ready, so that the case timeout counts the
        case alone: the first case of a new worker once timed out at 5 s on a loaded
        machine while the worker was still starting."""
        ctx = _context(self.device)
        parent, child = ctx.Pipe()
        process = ctx.Process(target=_serve, args=(child, str(self._log), self.env), daemon=True)
        with _PROCESSES:
            process.start()  # only a started process is ours to stop
        child.close()
        self._process, self._conn = process, parent
        deadline = time.monotonic() + STARTUP_S
        try:
            while not parent.poll(POLL_S):
                if stopping():
                    raise Interrupted
                if self._exitcode() is not None or time.monotonic() > deadline:
                    raise HarnessError(f"a worker did not start{self._log_tail()}")
            parent.recv()
        except EOFError:  # it died before it was ready
            self._kill()
            if _waited_for(stopping, STOP_S):  # a Ctrl-C to the run's group reached it first
                raise Interrupted from None
            raise HarnessError(f"a worker died before it was ready{self._log_tail()}"
                               ) from None
        except BaseException:
            self._kill()
            raise

    def _exitcode(self, wait: float = 0.0) -> int | None:
        """The worker's exit status, None while it runs (waiting up to `wait` seconds)."""
        with _PROCESSES:
            self._process.join(timeout=wait)
            return self._process.exitcode

    def _kill(self) -> None:
        if self._process is not None:
            with _PROCESSES:
                self._process.kill()
                self._process.join()
            self._conn.close()
        self._process = self._conn = None

    def _retire(self) -> None:
        """Ask the worker to exit, and make sure it has."""
        if self._process is not None:
            try:
                self._conn.send(None)
                self._exitcode(wait=5)
            except OSError:
                pass
            self._kill()
        self._served = 0

    def close(self) -> None:
        self._retire()
        for path in Path(self._dir).glob("*"):
            path.unlink()
        os.rmdir(self._dir)

    def _log_tail(self) -> str:
        try:
            text = self._log.read_bytes()[-LOG_TAIL:].decode("utf-8", "replace").strip()
        except OSError:
            return ""
        return f"\nlast output of the worker:\n{text}" if text else ""

    def judge(self, backend: str, cases: list[Case], stopping=lambda: False
              ) -> Iterator[CaseResult]:
        """Judge `cases` (a case, then seed variants of it) in the worker, yielding each
        result as it comes. A crash or a hang ends the request with a `crash` or `timeout`
        verdict for the case that was running; `stopping()` abandons it."""
        if self._served >= REQUESTS_PER_WORKER:
            self._retire()
        if self._process is None:
            self._start(stopping)
        self._served += 1
        self._conn.send((backend, cases))
        finished = False
        try:
            yield from self._results(cases, stopping)
            finished = True
        finally:
            if not finished and self._process is not None:
                self._kill()  # abandoned mid-request: its later messages must not linger

    def _results(self, cases: list[Case], stopping) -> Iterator[CaseResult]:
        index, last = 0, time.monotonic()
        while True:
            if stopping():
                raise Interrupted
            try:
                ready = self._conn.poll(POLL_S)
                message = self._conn.recv() if ready else None
            except (EOFError, OSError):  # the worker closed its end: it is exiting
                message, ready = None, True
            code = self._exitcode(wait=5 if ready else 0) if message is None else None
            if code is not None:
                yield self._lost(cases[index], _process_failure(
                    "crash", _signal_name(code),
                    f"the worker died ({_signal_name(code)}) while running this case"))
                return
            if message is None:
                if time.monotonic() - last > self.case_timeout:
                    yield self._lost(cases[index], _process_failure(
                        "timeout", "hang", f"the case ran past the case timeout "
                        f"({self.case_timeout:g} s) and its worker was killed"))
                    return
                continue
            kind, payload = message
            if kind == "done":
                return
            if kind == "error":
                raise HarnessError(f"sdpa-fuzz failed on a case:\n{payload}")
            yield payload
            index, last = index + 1, time.monotonic()

    def _lost(self, case: Case, verdict: Verdict) -> CaseResult:
        """The worker is gone or going: kill it (a new one starts with the next request)
        and charge the case it was running, with its last output."""
        tail = self._log_tail()
        self._kill()
        self.restarts += 1
        failure = verdict.failures[0]
        detail = replace(failure, detail=failure.detail + tail)
        return CaseResult(case, replace(verdict, failures=(detail,)), {})
