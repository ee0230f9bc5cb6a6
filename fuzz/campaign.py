"""A campaign across machines, kept in Redis (`--db redis://HOST:PORT/N`).

Runs on many hosts, each with its own `--corpus`, share one Redis: Hypothesis's examples
(its own `RedisExampleDatabase`, beside the local folder), claims on bug identities with a
lease instead of a PID, the identities of confirmed findings, and each machine's counts.
So each bug is reported once, a machine replays the others' failing examples first, and a
claim whose machine died is taken over when its lease runs out.

Redis going away must not lose a finding: every call here catches Redis's errors, keeps
the first as `failure` and falls back to what a run without `--db` does (claim locally,
know nothing more). The driver stops the run when it sees `failure`, writes what it holds
locally and its report, and exits 3.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterable
from urllib.parse import urlparse

from hypothesis.database import ExampleDatabase

from fuzz.identity import Identity

PREFIX = "sdpa-fuzz:"
LEASE_S = 120.0  # a claim outlives its machine by at most this
GONE_AFTER_S = 180.0  # a machine silent this long is shown as gone


class StoreError(Exception):
    """The campaign's Redis cannot be used; the message says which and why."""


def redis_url(text: str) -> bool:
    return text.startswith(("redis://", "rediss://", "unix://"))


def connect(url: str) -> Any:
    """A client for `url`, checked with a PING; StoreError if the URL is bad or Redis is
    unreachable, or the `redis` package is missing."""
    try:
        import redis
    except ImportError:
        raise StoreError("--db redis://...: the redis package is missing; install "
                         "sdpa-fuzz[redis]") from None
    if urlparse(url).scheme not in ("redis", "rediss", "unix"):
        raise StoreError(f"{url}: not a redis:// URL")
    try:
        client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=10)
        client.ping()
    except (ValueError, redis.RedisError) as exc:
        raise StoreError(f"{url}: cannot reach Redis ({type(exc).__name__}: {exc})") from None
    return client


@dataclass(frozen=True)
class CampaignFinding:
    """A confirmed finding as the campaign knows it."""

    identity: Identity
    signature: str
    machine: str
    case: str  # its path on that machine
    at: float  # unix time

    def to_json(self) -> str:
        return json.dumps({"key": self.identity.key, "features": sorted(self.identity.features),
                           "signature": self.signature, "machine": self.machine,
                           "case": self.case, "at": self.at})

    @staticmethod
    def from_json(text: bytes | str) -> "CampaignFinding":
        d = json.loads(text)
        return CampaignFinding(Identity(d["key"], frozenset(d["features"])), d["signature"],
                               d["machine"], d["case"], d["at"])


class Campaign:
    """This machine's handle on the campaign in one Redis database."""

    def __init__(self, url: str, lease_s: float = LEASE_S) -> None:
        self.client = connect(url)
        import redis

        self.url = url
        self.lease_ms = int(lease_s * 1000)
        self.machine = f"{socket.gethostname()}:{os.getpid()}"
        self.failure: BaseException | None = None
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._errors = (redis.RedisError, OSError)

    def _guard(self, fallback: Any, action) -> Any:
        """`action()`, or `fallback` once Redis has failed (the first failure is kept)."""
        if self.failure is not None:
            return fallback
        try:
            return action()
        except self._errors as exc:
            self.failure = exc
            return fallback

    def error(self) -> StoreError:
        return StoreError(f"the campaign's Redis at {self.url} went away "
                          f"({type(self.failure).__name__}: {self.failure}); this machine's "
                          "findings are in its corpus, the report says what it did")

    def examples(self) -> ExampleDatabase:
        """Hypothesis's examples in this Redis, shared by every machine."""
        from hypothesis.extra.redis import RedisExampleDatabase

        return _Kept(RedisExampleDatabase(self.client, expire_after=timedelta(days=30),
                                          key_prefix=(PREFIX + "examples:").encode()), self)

    # Claims: SET NX with a lease, renewed while held, so a dead machine's claim expires.

    def claim(self, name: str) -> bool:
        """Claim the right to report the identity `name`; False if a live machine holds it.
        True if Redis is gone: a finding is then written locally, never lost."""
        def take() -> bool:
            got = bool(self.client.set(PREFIX + "claim:" + name, self.machine, nx=True,
                                       px=self.lease_ms))
            if got:
                with self._lock:
                    self._held.add(name)
            return got
        return self._guard(True, take)

    def release(self, name: str) -> None:
        with self._lock:
            self._held.discard(name)

        def drop() -> None:
            key = PREFIX + "claim:" + name
            if self.client.get(key) == self.machine.encode():
                self.client.delete(key)
        self._guard(None, drop)

    # Findings and counts.

    def findings(self) -> list[CampaignFinding]:
        return self._guard([], lambda: [CampaignFinding.from_json(v) for v in
                                        self.client.hvals(PREFIX + "findings")])

    def publish(self, finding: CampaignFinding) -> None:
        """Record a confirmed finding, before its claim is released."""
        self._guard(None, lambda: self.client.hsetnx(PREFIX + "findings",
                                                     finding.identity.name,
                                                     finding.to_json()))

    def heartbeat(self, counts: dict[str, Any]) -> None:
        """Renew this machine's claims and publish its counts."""
        def beat() -> None:
            with self._lock:
                held = list(self._held)
            pipe = self.client.pipeline()
            for name in held:
                pipe.pexpire(PREFIX + "claim:" + name, self.lease_ms)
            pipe.hset(PREFIX + "machine:" + self.machine,
                      mapping={k: json.dumps(v) for k, v in
                               {**counts, "last_seen": time.time()}.items()})
            pipe.sadd(PREFIX + "machines", self.machine)
            pipe.execute()
        self._guard(None, beat)


class _Kept(ExampleDatabase):
    """The shared examples, never deleted by a run: once a machine has recorded a bug, its
    failing example passes there as known, and Hypothesis would delete or downgrade it
    before the other machines replayed it. Redis expires what nobody saves again."""

    def __init__(self, db: ExampleDatabase, campaign: Campaign) -> None:
        super().__init__()
        self.db, self.campaign = db, campaign

    def fetch(self, key: bytes) -> Iterable[bytes]:
        return self.campaign._guard([], lambda: list(self.db.fetch(key)))

    def save(self, key: bytes, value: bytes) -> None:
        self.campaign._guard(None, lambda: self.db.save(key, value))

    def delete(self, key: bytes, value: bytes) -> None:
        pass

    def move(self, src: bytes, dest: bytes, value: bytes) -> None:
        self.save(dest, value)


def campaign_status(url: str, now: float | None = None) -> str:
    """The campaign as `sdpa-fuzz status` prints it: machines, cases, findings."""
    client = connect(url)
    now = time.time() if now is None else now
    machines = []
    for name in sorted(m.decode() for m in client.smembers(PREFIX + "machines")):
        raw = client.hgetall(PREFIX + "machine:" + name)
        machines.append((name, {k.decode(): json.loads(v) for k, v in raw.items()}))
    findings = sorted((CampaignFinding.from_json(v) for v in
                       client.hvals(PREFIX + "findings")), key=lambda f: f.at)
    claims = [k.decode()[len(PREFIX + "claim:"):] for k in client.scan_iter(PREFIX + "claim:*")]

    def when(t: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t)) + \
            f" ({(now - t) / 60:.0f} min ago)"

    lines = [f"campaign {url}: {len(machines)} machine(s), "
             f"{sum(m.get('cases', 0) for _, m in machines)} cases, {len(findings)} "
             f"finding(s)" + (f", the last {when(findings[-1].at)}" if findings else "")]
    for name, m in machines:
        state = "gone" if now - m.get("last_seen", 0) > GONE_AFTER_S else "running"
        if m.get("final"):
            state = "ended"
        lines.append(f"  machine {name} [{state}]: {m.get('backend')} {m.get('space')}, "
                     f"{m.get('cases', 0)} cases, {m.get('findings', 0)} finding(s), "
                     f"last seen {when(m.get('last_seen', 0))}")
    for f in findings:
        lines.append(f"  finding {f.signature} by {f.machine} at {when(f.at)}: {f.case}")
    for name in claims:
        lines.append(f"  claimed, being confirmed: {name}")
    return "\n".join(lines)
