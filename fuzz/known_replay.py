"""The packaged corpus replayed against a user's backend, one test per entry
(`pytest --sdpa-fuzz-backend B --sdpa-fuzz-replay`): every entry that records a pass
passes or fails only as known bugs of layers the backend shares do
(`fuzz.replay.replay_entry`)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
import torch

from fuzz.corpus import corpus_files, known_bugs_for, load_entry, packaged_corpus
from fuzz.replay import replay_entry
from fuzz.worker import Worker

ENTRIES = corpus_files([packaged_corpus()])


@cache
def _known(backend: str) -> tuple:
    """The packaged corpus's known bugs of `backend`, read once per session."""
    return tuple(known_bugs_for(backend, [packaged_corpus()]))


@pytest.fixture(scope="session")
def sdpa_fuzz_replay_worker(sdpa_fuzz_case_timeout: float):
    worker = Worker(sdpa_fuzz_case_timeout,
                    device="cuda" if torch.cuda.is_available() else "cpu")
    yield worker
    worker.close()


@pytest.mark.parametrize("path", ENTRIES, ids=[p.stem for p in ENTRIES])
def test_packaged_entry_replays(sdpa_fuzz_backend: str, sdpa_fuzz_replay_worker: Worker,
                                path: Path) -> None:
    entry = load_entry(path)
    if entry.case.device == "cuda" and not torch.cuda.is_available():
        pytest.skip("a CUDA entry, and no GPU here")
    result = replay_entry(entry, sdpa_fuzz_replay_worker, sdpa_fuzz_backend,
                          known=_known(sdpa_fuzz_backend))
    assert result.ok, result.describe()
