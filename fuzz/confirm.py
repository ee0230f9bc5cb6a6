"""Confirming a finding before it is reported: replayed in a fresh worker process, and shown
by its minimal repro script, run as a user runs it.
"""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from fuzz.check import Failure
from fuzz.corpus import load_entry
from fuzz.replay import replay_entry
from fuzz.worker import HarnessError, Interrupted, Worker


def exit_status(failure: Failure) -> int | None:
    """The exit status a `crash` failure stands for: -signal, or the exit code."""
    condition = failure.condition
    if condition.startswith("exit-"):
        code = condition[len("exit-"):]
        return int(code) if code.lstrip("-").isdigit() else None
    try:
        return -signal.Signals[condition].value
    except KeyError:
        return None


class OutOfTime(Exception):
    """The run's deadline came before a confirmation could end."""


def wait(cmd: list[str], timeout: float, stopping: Callable[[], bool],
         stderr: Any = subprocess.DEVNULL, deadline: float = math.inf) -> int | None:
    """Run `cmd` quietly (its error output to `stderr`): its exit status, None if it ran
    past `timeout`. Raises Interrupted (and kills it) if the run stops meanwhile, and
    OutOfTime if the run's `deadline` (monotonic) comes first. It runs in a session of its
    own, so that a Ctrl-C meant for the run reaches it only through the run, never as a
    failure of its own that would pass for a finding that does not reproduce."""
    if time.monotonic() >= deadline:
        raise OutOfTime
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr,
                               start_new_session=True)
    own_end = time.monotonic() + timeout
    end = min(own_end, deadline)
    try:
        while process.poll() is None and not stopping() and time.monotonic() < end:
            time.sleep(0.1)
    except KeyboardInterrupt:  # Ctrl-C while confirming, after the searches stopped
        process.kill()
        process.wait()
        raise Interrupted from None
    if process.poll() is None:
        process.kill()
        process.wait()
        if stopping():
            raise Interrupted
        if own_end > deadline:
            raise OutOfTime
        return None
    if stopping():
        raise Interrupted
    return process.returncode


def replays(path: Path, backend: str, case_timeout: float, stopping: Callable[[], bool],
            deadline: float = math.inf) -> bool:
    """Whether the pending entry, read back from disk, fails as it records in a worker
    process of its own. The worker is new, forked from the preloaded server (spawned on
    CUDA): it holds none of the searches' compiled code or Dynamo state, as a process
    running `sdpa-fuzz replay` would not, without that process's two imports of torch
    (its own and its server's), which took 10 to 20 s of each confirmation."""
    if time.monotonic() >= deadline:
        raise OutOfTime
    entry = load_entry(path)
    worker = Worker(case_timeout, device=entry.case.device)
    try:
        result = replay_entry(entry, worker, backend,
                              stopping=lambda: stopping() or time.monotonic() > deadline)
    except Interrupted:
        if stopping():
            raise
        raise OutOfTime from None
    except HarnessError:
        return False
    finally:
        worker.close()
    return result.ok


def confirm(path: Path, failure: Failure, backend: str, case_timeout: float,
            stopping: Callable[[], bool] = lambda: False, deadline: float = math.inf
            ) -> str | None:
    """Why a pending entry is not confirmed, or None: replayed in a fresh worker process it
    must fail the same way again (`replays`), and its minimal repro script must show it too
    (exit 1 for a divergence, its own check's, not an exception of the script's; the same
    signal for a crash; no end for a hang). A finding only the harness sees is the
    harness's bug, not torch's; one its minimal script cannot show is not reported as a
    bug. Raises OutOfTime where the run's `deadline` cuts it short."""
    check = failure.check
    if not replays(path, backend, case_timeout, stopping, deadline):
        return "did not reproduce in a fresh process"
    script = [sys.executable, str(path.with_suffix(".py"))]
    if check == "timeout":
        script_timeout = case_timeout + 20  # its own start-up, then the hang
        return None if wait(script, script_timeout, stopping, deadline=deadline) is None else \
            f"its standalone repro script ended within {script_timeout:g} s"
    with tempfile.TemporaryFile() as errors:
        status = wait(script, case_timeout + 600, stopping, errors, deadline)
        errors.seek(0)
        raised = b"Traceback (most recent call last)" in errors.read()
    expected = exit_status(failure) if check == "crash" else 1
    if status != expected:
        return f"its minimal repro script exited {status}, not {expected}"
    if raised and check != "crash":
        return "its minimal repro script raised an exception of its own"
    return None


