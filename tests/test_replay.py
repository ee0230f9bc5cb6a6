"""Every committed corpus entry shows what it records: a pass stays a pass, and a known
failure still fails the same way (a known failure that passes is a strict xfail)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
import torch

from fuzz.case import CaseError
from fuzz.corpus import corpus_files, entry_script, load_entry
from fuzz.replay import replay_entry
from fuzz.worker import Worker
from tests.script_runner import run_script

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
FILES = corpus_files([CORPUS])
NO_GPU = "a CUDA entry: replayed only where a GPU is present"


def skip_without_its_device(entry) -> None:
    if entry.case.device == "cuda" and not torch.cuda.is_available():
        pytest.skip(NO_GPU)


def test_the_corpus_is_not_empty() -> None:
    assert FILES, f"no corpus entries under {CORPUS}"


@pytest.fixture(scope="module")
def worker():
    """One worker process for the whole replay, as `sdpa-fuzz replay` uses: an entry that
    records a crash or a hang is observed there without taking pytest down."""
    w = Worker(case_timeout=300, device="cuda" if torch.cuda.is_available() else "cpu")
    yield w
    w.close()


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_corpus_entry_shows_what_it_records(path: Path, worker: Worker) -> None:
    try:
        entry = load_entry(path)
    except CaseError as exc:
        pytest.fail(f"unreadable corpus entry: {exc}", pytrace=False)
    skip_without_its_device(entry)
    result = replay_entry(entry, worker)
    assert result.ok, result.describe()


@pytest.fixture(scope="module")
def fresh_processes():
    """A process per script, forked from a server that imported torch alone."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch"])
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        yield pool


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_minimal_script_agrees_with_the_entry(path: Path, fresh_processes) -> None:
    """A known failure's minimal script is what rendering gives today, and exits 1 by its
    own check (no exception of its own) while the bug holds in this torch, 0 outside its
    range: what a user pastes into a bug report shows what the fuzzer saw. An entry that
    records no failure has no script."""
    entry = load_entry(path)
    script = path.with_suffix(".py")
    expected = entry_script(entry.case, entry.finding, entry.case.compile.backend)
    if entry.expect.outcome != "known-failure":
        assert not script.exists(), f"{script.name}: a passing entry has no repro script"
        return
    assert expected is not None, f"{path.name} records no target for its minimal script"
    assert script.read_text() == expected, \
        f"{script.name} is stale: regenerate it with `sdpa-fuzz repro {path.name}`"
    skip_without_its_device(entry)
    code, stdout, stderr = fresh_processes.apply_async(
        run_script, (str(script), str(path.parent.parent))).get(timeout=600)
    output = stdout[-2000:] + stderr[-2000:]
    assert "Traceback (most recent call last)" not in stderr, output
    assert code == int(entry.expect.applies_to(torch.__version__)), output
