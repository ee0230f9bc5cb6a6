"""A campaign across machines on a real `redis-server` (fuzz/campaign.py): each bug
reported once, the others' examples replayed, a dead machine's claim taken over after its
lease, and Redis going away costing nothing on disk. Each "machine" is an `sdpa-fuzz run`
process with a corpus of its own."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis

from fuzz.campaign import Campaign
from fuzz.corpus import corpus_files, load_entry
from tests.test_driver import wait_for

ROOT = Path(__file__).resolve().parent.parent
FAULT = "tests.faults:tf32_matmul"  # float32, the commonest dtype: found within seconds


@contextlib.contextmanager
def redis_server():
    """A private redis-server on a free loopback port; its URL."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed: the README's test command installs it"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save",
                               "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    try:
        for _ in range(100):
            with contextlib.suppress(redis.ConnectionError):
                client.ping()
                break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0", server
    finally:
        server.kill()
        server.wait()


def start(corpus: Path, url: str, budget: float, *extra: str) -> subprocess.Popen:
    log = open(corpus.with_suffix(".out"), "w")
    return subprocess.Popen(
        [sys.executable, "-m", "fuzz.cli", "run", "--backend", FAULT, "--space", "sdpa",
         "--workers", "1", "--probes", "0",  # probing: tests/test_cli.py's fault run
         "--time-budget", str(budget), "--corpus", str(corpus), "--known",
         str(ROOT / "corpus"), "--db", url, "--report", str(corpus.with_suffix(".json")),
         *extra], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def finish(run: subprocess.Popen, timeout: float = 240) -> int:
    try:
        return run.wait(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)


def reported(corpus: Path) -> dict:
    return json.loads(corpus.with_suffix(".json").read_text())


def identities(report: dict, kinds: tuple[str, ...] = ("failures", "unconfirmed")) -> set[str]:
    return {f["key"] + "{" + ",".join(sorted(f["features"])) + "}"
            for kind in kinds for f in report[kind]}


def test_two_machines_report_each_bug_once_and_replay_each_others_examples(tmp_path) -> None:
    with redis_server() as (url, _):
        client = redis.Redis.from_url(url)
        # A budget long enough for its first finding to be shrunk in its round: one cut
        # short by the budget keeps features a plainer form lacks, and that plainer form
        # is then new to the other machine (the identity rule), as it would be to A.
        a = start(tmp_path / "a", url, 45, "--confirm-budget", "40")
        wait_for(lambda: client.hlen("sdpa-fuzz:findings") or a.poll() is not None, 180,
                 "finding published by the first machine")
        # While the first goes on. 30 s: under CI's load 15 s was too short for the second
        # to start its worker, learn the first's finding and replay its example (3 CI runs).
        b = start(tmp_path / "b", url, 30, "--confirm-budget", "30")
        assert finish(a) == 1 and finish(b) in (0, 1)
        first, second = reported(tmp_path / "a"), reported(tmp_path / "b")
        # Each identity was reported by one machine, and the campaign holds each once.
        assert not identities(first) & identities(second), (identities(first),
                                                            identities(second))
        published = {k.decode() for k in client.hkeys("sdpa-fuzz:findings")}
        # Only confirmed findings are published: a loaded machine may cut a confirmation.
        confirmed = ("failures",)
        assert identities(first, confirmed) | identities(second, confirmed) == published
        # The second machine met the first one's bug, from its example, and counted it known.
        seen = {e: h["cases"] for e, h in second["known_hits"].items()
                if e.startswith("campaign:") and ":" + str(a.pid) + ":" in e}
        assert seen and all(n >= 1 for n in seen.values()), second["known_hits"].keys()
        status = subprocess.run([sys.executable, "-m", "fuzz.cli", "status", "--db", url],
                                cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert status.returncode == 0 and "2 machine(s)" in status.stdout, status.stdout
        assert f"{len(published)} finding(s)" in status.stdout, status.stdout


def test_kill_9_loses_no_finding_and_leaves_no_claim_after_the_lease(tmp_path) -> None:
    with redis_server() as (url, _):
        client = redis.Redis.from_url(url)
        a = start(tmp_path / "a", url, 600, "--claim-lease", "3")
        try:
            wait_for(lambda: list(client.scan_iter("sdpa-fuzz:claim:*")), 180,
                     "claim (a finding being confirmed)")
            claimed = [k.decode().split(":", 2)[2] for k in client.scan_iter("sdpa-fuzz:claim:*")]
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(a.pid, signal.SIGKILL)  # the machine dies, workers and all
            a.wait()
        # Whatever it said it found is on its disk, whole.
        said = (tmp_path / "a.out").read_text()
        for path in corpus_files([tmp_path / "a"]):
            load_entry(path)
        for line in said.splitlines():
            if line.startswith("FOUND"):
                assert any(line.split()[1] == load_entry(p).finding["signature"]
                           for p in corpus_files([tmp_path / "a"]))
        assert not Campaign(url).claim(claimed[0])  # held while the lease runs
        wait_for(lambda: not list(client.scan_iter("sdpa-fuzz:claim:*")), 10,
                 "expiry of the dead machine's claim")
        assert Campaign(url).claim(claimed[0])  # another machine takes it over


def test_redis_going_away_mid_run_exits_3_with_a_report_and_nothing_lost(tmp_path) -> None:
    with redis_server() as (url, server):
        client = redis.Redis.from_url(url)
        run = start(tmp_path / "a", url, 600, "--confirm-budget", "30")
        try:
            wait_for(lambda: client.hlen("sdpa-fuzz:findings") or run.poll() is not None, 180,
                     "finding published")
        finally:
            server.kill()
        code = finish(run, timeout=120)
    out = (tmp_path / "a.out").read_text()
    assert code == 3, out[-3000:]
    assert "Traceback" not in out and "campaign's Redis" in out.strip().splitlines()[-1], out
    report = reported(tmp_path / "a")
    assert report["final"] and report["campaign"]["error"], report.get("campaign")
    on_disk = {load_entry(p).finding["signature"] for p in corpus_files([tmp_path / "a"])}
    assert {f["signature"] for f in report["failures"]} <= on_disk
    assert report["failures"], "the finding published before Redis went is not on disk"


def test_an_unreachable_redis_is_one_line_and_exit_3(tmp_path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for args in (["run", "--corpus", str(tmp_path), "--db", f"redis://127.0.0.1:{port}/0"],
                 ["status", "--db", f"redis://127.0.0.1:{port}/0"]):
        done = subprocess.run([sys.executable, "-m", "fuzz.cli", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 3, done.stderr
        (line,) = done.stderr.strip().splitlines()
        assert "cannot reach Redis" in line, line
