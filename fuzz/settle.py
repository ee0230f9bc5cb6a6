"""A new finding settled: confirmed in a fresh process, quarantined as flaky, or left
unconfirmed when the run ends first, and written to the corpus folder that puts it in.

It is written to `<corpus>/.pending` before it is confirmed, so that a crash of the run
(or of the machine) during confirmation loses nothing, and is only reported once it is in
its final folder.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch

from fuzz.case import Case
from fuzz.corpus import Expectation, environment, write_entry
from fuzz.identity import Identity
from fuzz.minimal import target_of
from fuzz.oracle import Failure, Verdict

FOUND, UNCONFIRMED, FLAKY = "FOUND", "UNCONFIRMED", "FLAKY (quarantined)"


class Unconfirmed(Exception):
    """Confirmation could not run (the run's time ran out, it was interrupted, or the user
    asked it to end at a finding): the message says why."""


@dataclass(frozen=True)
class Settled:
    kind: str  # FOUND, UNCONFIRMED or FLAKY
    path: Path  # the entry's JSON, in its final folder
    item: dict[str, Any]  # the report's record of it


def facts(case: Case, verdict: Verdict, identity: Identity, failure: Failure,
          resembles: list[str], found_at_s: float, first_seen_at: tuple[int, int],
          examples_at: int, shrunk: bool, backend: str) -> dict[str, Any]:
    """What the entry records of its finding, beside the case: the oracle's account, the
    minimal target, and where and in what environment the run met it (`first_seen_at`,
    `first_program_at`: cases and programs (compiles; a case is a program or one of its
    seed variants) judged when its key first failed, before shrinking; `examples_at`:
    when it was shrunk)."""
    return {"signature": failure.signature, "key": identity.key,
            "features": sorted(identity.features), "resembles": resembles,
            "explanation": verdict.explain(),
            "target": target_of(failure, verdict.bounds).to_dict(),
            "checked": list(verdict.checked), "kernels": list(verdict.kernels),
            "found_at_s": round(found_at_s, 2), "first_seen_at": first_seen_at[0],
            "first_program_at": first_seen_at[1],
            "examples_at": examples_at, "shrunk": shrunk,
            **environment(backend, case.device)}


def settle(corpus: Path, case: Case, finding: dict[str, Any], backend: str,
           confirmation: Callable[[Path], str | None]) -> Settled:
    """Write the finding pending, confirm it (`confirmation` of the pending entry: None
    where it reproduced, else why not; it raises Unconfirmed where it could not run), then
    write it to the corpus, its quarantine or its unconfirmed folder."""
    expect = Expectation("known-failure", finding["signature"],
                         torch_min=torch.__version__.split("+")[0],
                         note="found by sdpa-fuzz run; triage, then keep or promote",
                         keys=(finding["key"],), features=tuple(finding["features"]))
    case = replace(case, compile=replace(case.compile, backend=backend))
    pending = write_entry(corpus / ".pending", case, expect, finding, backend)
    try:
        doubt = confirmation(pending)
        folder, kind = (corpus, FOUND) if doubt is None else (corpus / "quarantine", FLAKY)
    except Unconfirmed as why:
        doubt, folder, kind = str(why), corpus / "unconfirmed", UNCONFIRMED
    if doubt is not None:
        expect = replace(expect, outcome="flaky", note=doubt)
    final = write_entry(folder, case, expect, finding, backend, issue=True)
    for p in (pending, pending.with_suffix(".py"), pending.with_suffix(".md")):
        p.unlink(missing_ok=True)
    script = final.with_suffix(".py")
    item = {"signature": finding["signature"], "key": finding["key"],
            "features": finding["features"], "resembles": finding["resembles"],
            "case": str(final), "found_at_s": finding["found_at_s"],
            "first_seen_at": finding["first_seen_at"],
            "first_program_at": finding["first_program_at"], "examples_at": finding["examples_at"],
            "shrunk": finding["shrunk"],
            "script_lines": len(script.read_text().splitlines()) if script.exists() else None,
            "explanation": finding["explanation"]}
    return Settled(kind, final, item)


def announcement(settled: Settled) -> str:
    """The lines a run prints when it has settled a finding."""
    item = settled.item
    like = f"\n  resembles the known {', '.join(item['resembles'])}" if item["resembles"] else ""
    like += "" if item["shrunk"] else "\n  NOT fully shrunk: the run ended first"
    return (f"\n{settled.kind} {item['signature']}\n  {settled.path}{like}\n  "
            + item["explanation"].replace("\n", "\n  "))
