"""The command line, run as a user runs it: real processes, real exit codes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fuzz.case import SCHEMA_VERSION
from fuzz.confirm import replays
from fuzz.corpus import known_bugs, load_entry
from fuzz.issue import EXPECTED
from tests import faults
from tests.test_driver import _default_sigint, has_children, wait_for

ROOT = Path(__file__).resolve().parent.parent
# The tests of the module-scoped fault run share one xdist worker, so that the run happens
# once; the others go wherever a worker is free (one group was 5 minutes on one worker).
FAULT_RUN = pytest.mark.xdist_group("cli")
FAULT = "tests.faults:tf32_matmul"  # float32, the commonest dtype: found within seconds


def sdpa_fuzz(*args: str, cwd: Path = ROOT, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fuzz.cli", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout)


FAULT_RUN_S = 60


@pytest.fixture(scope="module")
def fault_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path, dict]:
    """One short run against a fault backend, shared by the tests that read its output:
    it ends at its first confirmed finding (`--stop-after 1`), the fault's, found within
    seconds (the real torch bugs of the space are in the committed corpus)."""
    out = tmp_path_factory.mktemp("run")
    report = out / "report.json"
    result = sdpa_fuzz("run", "--backend", FAULT, "--space", "sdpa", "--time-budget",
                       str(FAULT_RUN_S), "--stop-after", "1", "--probes", "8",
                       "--corpus", str(out / "corpus"),
                       "--known", str(ROOT / "corpus"), "--report", str(report))
    return result, out / "corpus", json.loads(report.read_text())


def fault_finding(report: dict) -> str:
    """The reported case that shows the injected fault. The run may also report real torch
    divergences (docs/findings.md), which any backend shows."""
    hits = [f["case"] for f in report["failures"]
            if faults.CONDITIONS["tf32_matmul"](load_entry(f["case"]).case)]
    assert hits, [f["signature"] for f in report["failures"]]
    return hits[0]


@FAULT_RUN
def test_run_finds_a_fault_and_writes_it_before_reporting(fault_run) -> None:
    result, corpus, report = fault_run
    assert result.returncode == 1, result.stdout + result.stderr
    for failure in report["failures"]:
        entry = load_entry(failure["case"])
        assert entry.expect.outcome == "known-failure"
        assert entry.finding["signature"] == failure["signature"]
        assert Path(failure["case"]).with_suffix(".py").exists()
        assert f"FOUND {failure['signature']}" in result.stdout
    fault_finding(report)
    assert report["time"]["ended_by"] == "stop-after", report["time"]
    signatures = [f["signature"] for f in report["failures"] + report["flaky"]]
    assert len(signatures) == len(set(signatures)), "a signature was reported twice"
    assert {"examples", "elapsed_s", "failures", "checks", "time_share"} <= set(report)


@FAULT_RUN
def test_minimal_script_exits_1_while_the_divergence_holds(fault_run, tmp_path) -> None:
    """The finding's minimal script shows it by its own check, in at most 80 lines; the
    full checker (`repro --full`) shows it too."""
    _, _, report = fault_run
    script = Path(fault_finding(report)).with_suffix(".py")
    assert len(script.read_text().splitlines()) <= 80
    result = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    issue = script.with_suffix(".md").read_text()
    assert script.read_text().strip() in issue and "### Versions" in issue
    # What eager's behaviour requires, said for the check that failed.
    check = load_entry(fault_finding(report)).finding["target"]["check"]
    assert f"**Expected:** {EXPECTED[check]}" in issue, issue
    full = sdpa_fuzz("repro", fault_finding(report), "--full")
    (tmp_path / "full.py").write_text(full.stdout)
    result = subprocess.run([sys.executable, str(tmp_path / "full.py")], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "DIVERGENCE" in result.stdout, result.stdout


@FAULT_RUN
def test_minimal_script_exits_0_when_compiled_matches(fault_run, tmp_path) -> None:
    _, _, report = fault_run
    repro = sdpa_fuzz("repro", fault_finding(report), "--backend", "eager")
    assert repro.returncode == 0
    script = tmp_path / "repro.py"
    script.write_text(repro.stdout)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


@FAULT_RUN
def test_replay_holds_the_finding_to_its_expectation(fault_run) -> None:
    _, _, report = fault_run
    case = fault_finding(report)
    assert sdpa_fuzz("replay", case, "--backend", FAULT).returncode == 0
    # On a clean backend the known failure does not apply: the case must simply pass.
    assert sdpa_fuzz("replay", case, "--backend", "eager").returncode == 0


@FAULT_RUN
def test_confirmation_does_not_hold_a_finding_a_fresh_worker_does_not_show(fault_run,
                                                                          tmp_path) -> None:
    """Confirmation's replay holds the entry to what it records: the fault's case, recorded
    on `eager`, where it passes, is not confirmed there."""
    path = Path(fault_finding(fault_run[2]))
    entry = json.loads(path.read_text())
    entry["case"]["compile"]["backend"] = "eager"
    clean = tmp_path / path.name
    clean.write_text(json.dumps(entry))
    assert not replays(clean, "eager", 60, lambda: False)


@FAULT_RUN
def test_show_prints_the_case(fault_run) -> None:
    _, _, report = fault_run
    shown = sdpa_fuzz("show", fault_finding(report))
    assert shown.returncode == 0 and "def fn(" in shown.stdout and "float32" in shown.stdout


@pytest.mark.parametrize("args, message", [
    (["run", "--backend", "no_such_backend", "--time-budget", "1"], "unknown backend"),
    (["run", "--backend", "no_such_module:fn", "--time-budget", "1"], "cannot import"),
    (["run", "--time-budget", "-3"], "must be positive"),
    (["run", "--bogus"], "unrecognized arguments"),
    (["replay", "does/not/exist.json"], "no such file"),
    (["status", "--db", "some/folder"], "needs a redis:// URL"),
])
def test_bad_usage_exits_2_with_a_message(args: list[str], message: str) -> None:
    result = sdpa_fuzz(*args)
    assert result.returncode == 2
    assert message in result.stderr


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    (json.dumps({"format": "sdpa-fuzz-case", "schema": SCHEMA_VERSION + 1, "case": {}}),
     f"written by schema {SCHEMA_VERSION + 1}"),
    (json.dumps({"hello": "world"}), "not an sdpa-fuzz case"),
])
@pytest.mark.parametrize("command", ["replay", "show", "repro"])
def test_bad_case_files_exit_2_naming_the_file(tmp_path, command: str, content: str,
                                               message: str) -> None:
    bad = tmp_path / "bad_case.json"
    bad.write_text(content)
    result = sdpa_fuzz(command, str(bad))
    assert result.returncode == 2
    assert "bad_case.json" in result.stderr and message in result.stderr


@FAULT_RUN
def test_sigkill_leaves_a_corpus_that_replays_and_a_rerun_resumes(fault_run, tmp_path) -> None:
    """kill -9 of a run working on a corpus that holds findings, then a second run on it:
    whole files only, a clean replay, and nothing the corpus holds reported again (the
    database brings those cases back first, so a run that forgot them would report them
    within seconds)."""
    _, original, _ = fault_run
    corpus = tmp_path / "corpus"
    shutil.copytree(original, corpus)
    known = known_bugs(corpus, FAULT, ("dynamo",))
    assert known
    args = ["run", "--backend", FAULT, "--space", "sdpa", "--workers", "2", "--probes", "0",
            "--corpus", str(corpus), "--known", str(ROOT / "corpus")]
    run = subprocess.Popen([sys.executable, "-m", "fuzz.cli", *args, "--time-budget", "600"],
                           cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        time.sleep(15)
        run.kill()  # SIGKILL the driver alone, whatever it is doing
        run.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)  # what it left running
    for path in corpus.rglob("*.json"):
        if ".hypothesis" not in path.parts:
            load_entry(path)  # whole files only
    replay = sdpa_fuzz("replay", str(corpus))
    assert replay.returncode == 0, replay.stdout + replay.stderr

    report = tmp_path / "again.json"
    rerun = sdpa_fuzz(*args, "--time-budget", "15", "--no-confirm", "--report", str(report))
    assert rerun.returncode in (0, 1), rerun.stderr
    again = json.loads(report.read_text())["failures"]
    assert not [f for f in again if any(
        b.identity.covers(f["key"], frozenset(f["features"])) for b in known)], again


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_a_run_with_its_report_and_exit_130(tmp_path, signum) -> None:
    """Ctrl-C, or what `timeout`, a batch scheduler or Kubernetes sends: the run stops with
    its summary and its report, no traceback, and 130 unless it found something new."""
    corpus, report = tmp_path / "corpus", tmp_path / "report.json"
    run = subprocess.Popen(
        [sys.executable, "-m", "fuzz.cli", "run", "--backend", "eager", "--space", "sdpa",
         "--workers", "1", "--time-budget", "600", "--corpus", str(corpus), "--known",
         str(ROOT / "corpus"), "--report", str(report)], cwd=ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=_default_sigint)
    try:
        # Its worker started (a loaded machine once took 12 s to import torch), then
        # some cases in: the run prints nothing yet.
        wait_for(lambda: has_children(run.pid) or run.poll() is not None, 120, "a worker")
        time.sleep(5)
        assert run.poll() is None, "the run ended early"
        run.send_signal(signum)
        output, _ = run.communicate(timeout=90)
    finally:
        with contextlib.suppress(ProcessLookupError):
            run.kill()
    assert "[interrupted]" in output and "Traceback" not in output, output[-3000:]
    written = json.loads(report.read_text())
    assert written["interrupted"] and written["final"] and written["arguments"][0] == "run"
    # 1 if it met a torch bug not yet in the corpus: findings win over the interruption
    assert run.returncode == (1 if written["failures"] + written["unconfirmed"] else 130)


SLOW_DYNAMO_IMPORT = """
import atexit, importlib.abc, os, pathlib, sys, time

MARK = pathlib.Path(os.environ["SDPA_FUZZ_TEST_MARK"])


class SlowDynamo(importlib.abc.MetaPathFinder):
    \"\"\"Holds torch._dynamo's import in the middle for 3 s, once, and says when.\"\"\"

    def find_spec(self, name, path, target=None):
        if name == "torch._dynamo.eval_frame" and not MARK.exists():
            MARK.write_text("importing")
            time.sleep(3)
        return None


sys.meta_path.insert(0, SlowDynamo())
atexit.register(lambda: MARK.write_text(str("torch._dynamo.eval_frame" in sys.modules)))
"""


def test_a_signal_in_the_middle_of_torch_s_import_waits_for_it_to_end(tmp_path) -> None:
    """A scheduler may stop a job in its first seconds, while it imports torch (4 s or
    more). Here the signal comes while torch._dynamo is half imported (held there by an
    import hook): the import still ends whole, and the run exits 130 with no traceback. A
    KeyboardInterrupt raised inside it would leave it half imported, which some import
    code swallows: one stopped run recursed without end in numpy's `linalg`, another
    went on running, another died of SIGINT at exit."""
    (tmp_path / "sitecustomize.py").write_text(SLOW_DYNAMO_IMPORT)
    mark = tmp_path / "mark"
    env = {**os.environ, "SDPA_FUZZ_TEST_MARK": str(mark),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    run = subprocess.Popen(
        [sys.executable, "-m", "fuzz.cli", "run", "--backend", "eager", "--corpus",
         str(tmp_path / "corpus")], cwd=ROOT, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, env=env)
    try:
        wait_for(mark.exists, 120, "the import hook")
        run.send_signal(signal.SIGTERM)
        output, _ = run.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            run.kill()
    assert run.returncode == 130 and "interrupted" in output and "Traceback" not in output, \
        (run.returncode, output[-3000:])
    assert mark.read_text() == "True", "torch._dynamo was left half imported"


def test_the_time_budgets_bound_the_run(tmp_path) -> None:
    """--time-budget, then --confirm-budget, bound the wall time: a finding whose
    confirmation the deadline cuts short is written unconfirmed, and reported (exit 1).
    The fault compiles slowly, so that its confirmation cannot end in time."""
    corpus, report = tmp_path / "corpus", tmp_path / "report.json"
    t0 = time.monotonic()
    result = sdpa_fuzz("run", "--backend", "tests.faults:slow_tf32_matmul", "--space", "sdpa",
                       "--workers", "1", "--probes", "0", "--time-budget", "20",
                       "--confirm-budget", "1", "--corpus", str(corpus), "--known", str(ROOT / "corpus"), "--report", str(report))
    wall = time.monotonic() - t0
    written = json.loads(report.read_text())
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert written["unconfirmed"] and not written["interrupted"], written["failures"]
    entry = load_entry(written["unconfirmed"][0]["case"])
    assert "ran out before it could confirm" in entry.expect.note
    times = written["time"]
    assert times["wall_s"] <= 20 + 1 + 5 and times["search_s"] >= 20, times
    assert wall < 20 + 1 + 30, wall  # + starting Python, torch and the workers, then closing
    assert times["case_timeout"] == "adaptive" and times["case_timeout_s"] >= 30


def test_an_internal_error_is_one_line_and_exit_3(tmp_path) -> None:
    """A bug in sdpa-fuzz itself (injected: the fuzzer raises) is neither a finding nor bad
    input: one line naming it and where its traceback went, exit 3."""
    inject = ("import sys, fuzz.cli, fuzz.driver\n"
              "def broken(self): raise RuntimeError('injected')\n"
              "fuzz.driver.Fuzzer.run = broken\n"
              "sys.exit(fuzz.cli.main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", inject, "run", "--backend", "eager",
                             "--corpus", str(tmp_path / "corpus")], cwd=ROOT, text=True,
                            capture_output=True, timeout=300)
    assert result.returncode == 3, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "internal error" in line and "RuntimeError: injected" in line
    log = Path(line.rsplit("traceback in ", 1)[1])
    assert "Traceback" in log.read_text() and "broken" in log.read_text()
    log.unlink()


def test_a_run_with_nothing_new_exits_0_and_starts_with_plain_calls(tmp_path) -> None:
    result = sdpa_fuzz("run", "--backend", "eager", "--space", "sdpa", "--workers", "1",
                       "--max-examples", "4", "--corpus", str(tmp_path / "corpus"),
                       "--known", str(ROOT / "corpus"), "--report", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "0 new failure(s)" in result.stdout
    # A search's first stretch (fuzz/generation.py): single SDPA calls, no seed variants.
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["examples"] == report["programs"] == 4, report
    assert {a for a in report["coverage"] if a.startswith("statement:")} \
        == {"statement:attention"}, report["coverage"]


def test_version_and_the_exit_statuses_in_help() -> None:
    version = sdpa_fuzz("--version")
    assert version.returncode == 0 and version.stdout.startswith("sdpa-fuzz ")
    helptext = sdpa_fuzz("run", "--help").stdout
    assert all(f"\n  {code} " in helptext for code in (0, 1, 2, 3, 130)), helptext


def test_replay_of_the_corpus_skips_cuda_entries_without_a_gpu() -> None:
    """`sdpa-fuzz replay corpus`, as CI runs it, on a machine with no GPU: the CUDA entry is
    named as skipped, and the command does not fail for it."""
    cuda = ROOT / "corpus" / "known-cuda-output-strides-padded.json"
    if shutil.which("nvidia-smi"):
        pytest.skip("a GPU may be present: the entry is replayed there")
    result = sdpa_fuzz("replay", str(cuda))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "skipped: a CUDA entry" in result.stdout and "1 skipped" in result.stdout
