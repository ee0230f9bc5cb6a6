"""The corpus: committed cases, each with what it must show, written atomically.

An entry is a case file (the Case JSON plus `expect` and `finding`) and, beside it for a
failure, its minimal repro script (`fuzz.minimal`; the finding's `target` says what it
shows) and, for a finding of a run, its issue text (`.md`). Entries are written to a temporary file and renamed into place,
so a killed run never leaves half a file, and two runs sharing a folder never clobber
each other's work.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.util
import json
from collections import Counter
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch

from fuzz.backends import declared_layers
from fuzz.case import Case, CaseError
from fuzz.caseio import case_from_dict, case_to_dict
from fuzz.issue import issue_text
from fuzz.minimal import Target, minimal_script
from fuzz.identity import LAYERS, Identity, backend_layers, features

OUTCOMES = ("pass", "known-failure", "flaky")
# Folders of a corpus that hold no entries to replay: flaky findings, findings a stopped
# run could not confirm, Hypothesis's database, entries being confirmed, claims.
NOT_ENTRIES = {"quarantine", "unconfirmed", ".hypothesis", ".pending", ".claims"}


@dataclass(frozen=True)
class Expectation:
    """`pass`, or `known-failure` of `signature` for torch versions in [torch_min, torch_below).

    The bug's identity (`fuzz.identity`) is each of `keys` with `features`: the keys of
    `signature` and of the same bug's other failures, and the features of this entry's
    shrunk case. `layer` is where the bug lives (`dynamo`, `aot`, `inductor`), so the
    backends it silences are those that run through that layer; without one, only the
    backend the case was found with. `symptoms` are the bug's signatures that runs and the
    property test have seen (another dtype, another replacement of the same rewrite)."""

    outcome: str = "pass"
    signature: str | None = None
    torch_min: str | None = None
    torch_below: str | None = None
    note: str = ""
    symptoms: tuple[str, ...] = ()
    layer: str | None = None
    keys: tuple[str, ...] = ()
    features: tuple[str, ...] | None = None  # None: not recorded; () covers every case

    def applies_to(self, version: str) -> bool:
        v = version_tuple(version)
        if self.torch_min and v < version_tuple(self.torch_min):
            return False
        return not (self.torch_below and v >= version_tuple(self.torch_below))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()
                if v not in (None, "", ()) or (k == "features" and v is not None)}


@dataclass(frozen=True)
class Entry:
    path: Path
    case: Case
    expect: Expectation
    finding: dict[str, Any]


def version_tuple(version: str) -> tuple[int, ...]:
    """'2.13.0+cpu' -> (2, 13, 0): enough order for torch release ranges."""
    return tuple(int(x) for x in re.findall(r"\d+", version.split("+")[0])[:3])


def _expectation(raw: Any, source: str) -> Expectation:
    if raw is None:
        return Expectation()
    if not isinstance(raw, dict) or raw.get("outcome") not in OUTCOMES:
        raise CaseError(f"{source}: \"expect\" must be an object whose outcome is one of "
                        f"{OUTCOMES}")
    unknown = set(raw) - set(Expectation.__dataclass_fields__)
    if unknown:
        raise CaseError(f"{source}: unknown field(s) in \"expect\": {sorted(unknown)}")
    lists = {}
    for name in ("symptoms", "keys", "features"):
        if name not in raw:
            continue
        value = raw[name]
        if not (isinstance(value, list) and all(isinstance(x, str) for x in value)):
            raise CaseError(f"{source}: \"expect.{name}\" must be a list of strings")
        lists[name] = tuple(value)
    if raw.get("layer") not in (None,) + LAYERS:
        raise CaseError(f"{source}: \"expect.layer\" must be one of {LAYERS}")
    expect = Expectation(**{**raw, **lists})
    if expect.outcome == "known-failure" and not (expect.signature and expect.keys):
        raise CaseError(f"{source}: a known failure must name its signature and its "
                        "identity keys (\"expect.keys\")")
    return expect


def load_entry(path: str | Path) -> Entry:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseError(f"{path}: cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise CaseError(f"{path}: not valid JSON ({exc})") from None
    case = case_from_dict(data, str(path))
    finding = data.get("finding", {})
    if not isinstance(finding, dict):
        raise CaseError(f"{path}: \"finding\" must be an object")
    return Entry(path, case, _expectation(data.get("expect"), str(path)), finding)


def corpus_files(paths: list[str | Path]) -> list[Path]:
    """Case files under each path (a file, or a folder searched recursively), sorted.

    Files under NOT_ENTRIES folders are not corpus entries.
    """
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(f for f in p.rglob("*.json") if not NOT_ENTRIES & set(f.parts))
        else:
            found.append(p)
    return found


def atomic_write(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder, fsync, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def slug(signature: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", signature).strip("-")[:60]


def entry_name(case: Case, signature: str) -> str:
    digest = hashlib.sha256(json.dumps(case_to_dict(case), sort_keys=True).encode()).hexdigest()
    return f"{slug(signature)}-{digest[:10]}"


def environment(backend: str, device: str) -> dict[str, str]:
    return {"torch": torch.__version__, "backend": backend, "device": device,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def entry_script(case: Case, finding: dict[str, Any], backend: str) -> str | None:
    """The entry's minimal repro script, if it records a failure to show (`target`)."""
    target = finding.get("target")
    return minimal_script(case, Target.from_dict(target), backend) if target else None


def write_entry(folder: Path, case: Case, expect: Expectation, finding: dict[str, Any],
                backend: str, issue: bool = False) -> Path:
    """Write the case file and, for a failure, its minimal repro script (and with `issue`,
    its issue text); the script first, so that a case file on disk always has its script."""
    name = entry_name(case, finding.get("signature", expect.outcome))
    case_path = folder / f"{name}.json"
    script = entry_script(case, finding, backend)
    if script is not None:
        atomic_write(case_path.with_suffix(".py"), script)
        if issue:
            target = Target.from_dict(finding["target"])
            atomic_write(case_path.with_suffix(".md"), issue_text(target, finding, script))
    document = {**case_to_dict(case), "expect": expect.to_dict(), "finding": finding}
    atomic_write(case_path, json.dumps(document, indent=1) + "\n")
    return case_path


@dataclass(frozen=True)
class KnownBug:
    """A bug on record: the entry that holds it and one of its identities."""

    entry: str  # the entry's file name, without its folder
    identity: Identity


def entry_identities(entry: Entry) -> list[Identity]:
    """The entry's identities: each recorded key with its recorded features (by default,
    every feature of its case)."""
    expect = entry.expect
    found = features(entry.case) if expect.features is None else frozenset(expect.features)
    return [Identity(key, found) for key in expect.keys]


def silences(entry: Entry, backend: str, layers: tuple[str, ...], version: str) -> bool:
    """Whether the entry's bug holds for a run of `backend` (through `layers`) on torch
    `version`: a known failure, in its torch range, in a layer the backend runs through
    (or, with no layer recorded, found with this very backend)."""
    expect = entry.expect
    if expect.outcome != "known-failure" or not expect.applies_to(version):
        return False
    if expect.layer is None:
        return entry.case.compile.backend == backend
    return expect.layer in layers


def packaged_corpus() -> Path:
    """The committed corpus as installed: pyproject.toml ships corpus/ as the
    `sdpa_fuzz_corpus` package, so an installed sdpa-fuzz knows its bugs from any folder."""
    spec = importlib.util.find_spec("sdpa_fuzz_corpus")
    if spec is None or not spec.submodule_search_locations:
        raise CaseError("the packaged corpus (sdpa_fuzz_corpus) is not installed; "
                        "reinstall sdpa-fuzz")
    return Path(list(spec.submodule_search_locations)[0])


def known_bugs(folder: Path, backend: str, layers: tuple[str, ...]) -> list[KnownBug]:
    """The bugs a corpus has on record that hold for `backend` on this torch, so a run
    does not report them again. Quarantined entries are not among them: a flaky instance
    does not make a bug's reproducible instances flaky."""
    found = []
    for path in corpus_files([folder]) if folder.exists() else []:
        try:
            entry = load_entry(path)
        except CaseError:
            continue
        if silences(entry, backend, layers, torch.__version__):
            found += [KnownBug(path.name, i) for i in entry_identities(entry)]
    return found


def known_bugs_for(backend: str, folders: Iterable[Path]) -> list[KnownBug]:
    """`known_bugs` of every folder, for the layers `backend` runs through or declares
    (`fuzz.identity.backend_layers`): what a run, a replay or the plugin counts as known."""
    layers = backend_layers(backend, declared_layers(backend))
    return [bug for folder in folders for bug in known_bugs(folder, backend, layers)]


def quarantined(folder: Path) -> Counter:
    """How many flaky findings of each key the corpus's quarantine holds."""
    found: Counter = Counter()
    quarantine = folder / "quarantine"
    for path in quarantine.glob("*.json") if quarantine.exists() else []:
        try:
            finding = json.loads(path.read_text())["finding"]
            found[finding["key"]] += 1
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return found


def _claim_path(folder: Path, signature: str) -> Path:
    digest = hashlib.sha256(signature.encode()).hexdigest()[:12]
    return folder / ".claims" / f"{slug(signature)}-{digest}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(path: Path) -> int:
    try:
        return int(path.read_text() or 0)
    except (OSError, ValueError):
        return 0


def prune_claims(folder: Path) -> None:
    """Drop claims whose run is gone (killed before it could release them)."""
    for path in (folder / ".claims").glob("*"):
        holder = _holder(path)
        if not (holder and _alive(holder)):
            path.unlink(missing_ok=True)


def claim(folder: Path, signature: str) -> bool:
    """Claim the right to report `signature` into `folder`; False if a live process (a
    concurrent run sharing the corpus) holds it. A claim left by a killed run is taken over.
    """
    path = _claim_path(folder, signature)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            holder = _holder(path)
            if holder and _alive(holder):
                return False
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        return True
    return False


def release(folder: Path, signature: str) -> None:
    _claim_path(folder, signature).unlink(missing_ok=True)
