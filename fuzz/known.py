"""The bugs a run does not report again: the corpora's (`--known`), the campaign's, the ones
the run found itself, and the keys it closed after MAX_FLAKY flaky findings.

A failure is known only where a known identity covers its key and the case's features
(`fuzz.identity`): a known symptom on other knobs is still a new bug. Not thread-safe: the
driver holds its lock around each use.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable

from fuzz.corpus import KnownBug
from fuzz.identity import Identity

MAX_FLAKY = 3  # flaky findings of one key, in the corpus's quarantine, before it closes
THIS_RUN = "(this run)"  # the entry of a finding not yet written


def covering(bugs: Iterable[KnownBug], key: str, found: frozenset[str]) -> KnownBug | None:
    """The first of `bugs` whose identity covers a failure of `key` on a case with
    features `found`."""
    return next((b for b in bugs if b.identity.covers(key, found)), None)


class KnownBugs:
    def __init__(self, bugs: list[KnownBug], flaky_seen: Counter) -> None:
        # A key stays open after a flaky finding, up to MAX_FLAKY of them in all.
        self.flaky_seen = flaky_seen
        self.bugs = bugs + [KnownBug("(flaky, closed)", Identity(key, frozenset()))
                            for key, n in flaky_seen.items() if n >= MAX_FLAKY]

    def covering(self, key: str, found: frozenset[str]) -> KnownBug | None:
        return covering(self.bugs, key, found)

    def learn(self, bugs: Iterable[KnownBug]) -> None:
        """Add those of `bugs` whose identity is not known yet (the campaign's, re-read)."""
        have = {b.identity for b in self.bugs}
        self.bugs += [b for b in bugs if b.identity not in have]

    def resembling(self, key: str) -> list[str]:
        """The corpus entries of known bugs with the same key (other knobs): a report names
        them, since the new bug may be the same one reached another way."""
        return sorted({b.entry for b in self.bugs
                       if b.identity.key == key and b.entry.endswith(".json")})

    def written(self, identity: Identity, entry: str) -> None:
        """This run's finding is on disk as `entry`: its later cases are counted on it."""
        self.bugs = [KnownBug(entry, b.identity) if b.identity == identity else b
                     for b in self.bugs]

    def flaky(self, identity: Identity) -> None:
        """This run's finding did not reproduce: its key stays open (a reproducible bug of
        it may come) until it has been flaky MAX_FLAKY times."""
        self.flaky_seen[identity.key] += 1
        if self.flaky_seen[identity.key] < MAX_FLAKY:
            self.bugs = [b for b in self.bugs if b.identity != identity]
