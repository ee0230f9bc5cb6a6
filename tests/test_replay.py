"""Every committed corpus entry shows what it records: a pass stays a pass, and a known
failure still fails the same way (a known failure that passes is a strict xfail)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz.case import CaseError
from fuzz.corpus import corpus_files, load_entry
from fuzz.replay import replay_entry

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
FILES = corpus_files([CORPUS])


def test_the_corpus_is_not_empty() -> None:
    assert FILES, f"no corpus entries under {CORPUS}"


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_corpus_entry_shows_what_it_records(path: Path) -> None:
    try:
        entry = load_entry(path)
    except CaseError as exc:
        pytest.fail(f"unreadable corpus entry: {exc}", pytrace=False)
    result = replay_entry(entry)
    assert result.ok, result.describe()
