"""What a run counted, and the report it writes: cases, checks, coverage of rewrites and
kernels, known bugs hit, where the time went, and its findings.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch

from fuzz import rewrites
from fuzz.case import (STATEMENTS, Attention, Case, HandAttention, ModelAttention, ModuleCall,
                       ModuleInput, TensorSpec, attention_feeds, hidden_input, walk)
from fuzz.caseio import case_to_dict, case_to_json
from fuzz.execute import Timings
from fuzz.oracle import Verdict
from fuzz.worker import CaseResult


@dataclass
class RunStats:
    started: float = field(default_factory=time.monotonic)
    examples: int = 0
    programs: int = 0
    shrink_programs: int = 0  # of `programs`, those run while Hypothesis shrank a finding
    checks: Counter = field(default_factory=Counter)
    failed_checks: Counter = field(default_factory=Counter)
    first_failed_at: dict[str, int] = field(default_factory=dict)  # check -> cases before
    warm_only: Counter = field(default_factory=Counter)
    rewrite_programs: Counter = field(default_factory=Counter)  # family -> programs
    rewrite_hits: Counter = field(default_factory=Counter)  # family -> rewritten ones
    rewrite_patterns: Counter = field(default_factory=Counter)  # pattern -> programs
    kernel_cases: Counter = field(default_factory=Counter)  # eager's SDPA kernel -> cases
    forms: Counter = field(default_factory=Counter)  # `program_forms` -> programs drawn
    coverage: Counter = field(default_factory=Counter)  # `coverage_areas` -> programs drawn
    excused: Counter = field(default_factory=Counter)  # why outputs went uncompared -> cases
    worst_ratio: dict[str, float] = field(default_factory=dict)  # quantity -> max error ratio
    timings: Timings = field(default_factory=Timings)
    findings: list[dict[str, Any]] = field(default_factory=list)
    flaky: list[dict[str, Any]] = field(default_factory=list)
    unconfirmed: list[dict[str, Any]] = field(default_factory=list)
    restarts: int = 0
    interrupted: bool = False
    known_hits: dict[str, dict[str, Any]] = field(default_factory=dict)  # entry -> hits
    slowest: float = 0.0  # seconds of the slowest case judged, for the adaptive timeout

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def account(self, results: list[CaseResult], seconds: float, shrinking: bool) -> None:
        """Count one program's batch: the case, its seed variants, and `seconds` for all
        (the worker's phases, and the rest as transport). A program drawn while Hypothesis
        shrinks is not counted in the forms and coverage of what the search drew."""
        self.programs += 1
        self.shrink_programs += shrinking
        first = results[0]  # the program's own compile; its variants reuse it
        if not shrinking:
            self.forms.update(program_forms(first.case))
            self.coverage.update(coverage_areas(first.case, first.verdict))
        for label in rewrites.families(first.case):
            self.rewrite_programs[label] += 1
            self.rewrite_hits[label] += bool(first.verdict.rewrites)
        self.rewrite_patterns.update(first.verdict.rewrites)
        for r in results:
            self.warm_only.update(r.warm_only)
            self.checks.update(r.verdict.checked)
            self.kernel_cases.update(set(r.verdict.kernels))
            self.excused.update(set(r.verdict.excused))
            tag = "@" + "+".join(sorted(set(r.verdict.kernels))) if r.verdict.kernels else ""
            for quantity, ratio in r.verdict.errors:
                key = quantity + tag
                self.worst_ratio[key] = max(self.worst_ratio.get(key, 0.0), round(ratio, 4))
            for f in r.verdict.failures:
                self.failed_checks[f.check] += 1
                self.first_failed_at.setdefault(f.check, self.examples)
            self.examples += 1
            self.slowest = max(self.slowest, sum(r.phases.values()))
            for phase, t in r.phases.items():
                self.timings.add(phase, t)
        self.timings.add("transport", seconds - sum(t for r in results
                                                    for t in r.phases.values()))

    def hit(self, entry: str, case: Case, signature: str) -> None:
        """Count a case that shows the known bug of `entry`; keep the smallest as its
        sample."""
        hit = self.known_hits.setdefault(entry, {"cases": 0, "signatures": set(),
                                                 "sample": None})
        hit["cases"] += 1
        hit["signatures"].add(signature)
        if hit["sample"] is None or smaller(case, hit["sample"]):
            hit["sample"] = case


def smaller(a: Case, b: Case | None) -> bool:
    """Whether `a` is the smaller case, by the length of its JSON (any case beats none)."""
    return b is None or len(case_to_json(a)) < len(case_to_json(b))


def progress_line(s: RunStats, budget: float) -> str:
    return (f"{s.examples} cases ({s.programs} programs), "
            f"{s.examples / max(s.elapsed, 1e-9):.1f}/s, {len(s.findings)} findings, "
            f"{len(s.flaky)} flaky, {s.elapsed:.0f}s of {budget:.0f}s   ")


LONG = 32  # a sequence this long reaches the CPU flash kernel's blocked paths
KEY_BLOCK = 512  # the CPU flash kernel's key block: more keys run it over several


def key_length(case: Case, stmt: object) -> int:
    """How many keys an attention attends over (0: not an attention)."""
    if isinstance(stmt, ModelAttention):
        x = hidden_input(case, stmt)
        past = case.spec(stmt.cache[0]) if stmt.cache else None
        return x.shape[1] + (past.shape[2] if isinstance(past, TensorSpec) else 0) \
            if x is not None else 0
    if isinstance(stmt, ModuleCall):
        x = case.spec(stmt.key or stmt.query)
        module = case.spec(stmt.module)
        if not isinstance(x, TensorSpec) or not isinstance(module, ModuleInput):
            return 0
        return x.shape[1 if module.batch_first else 0]
    if isinstance(stmt, (Attention, HandAttention)):
        k = case.spec(stmt.key)
        perm = getattr(stmt, "perm", ())
        dim = perm[-2] if perm else -2
        return k.shape[dim] if isinstance(k, TensorSpec) and len(k.shape) >= 2 else 0
    return 0


def program_forms(case: Case) -> set[str]:
    """What a program is, for the report's shares: whether it makes an SDPA call (from a
    model layer or not), writes attention by hand, or has no attention at all, and
    whether some attention is long (LONG keys or more), runs over several key blocks
    (`key-blocks`: more than KEY_BLOCK keys), or is fed by another (chained)."""
    body = list(walk(case.program.body))
    forms = {name for name, kinds in (("sdpa-call", (Attention, ModelAttention)),
                                      ("model-layer", (ModelAttention,)),
                                      ("nn-module", (ModuleCall,)),
                                      ("hand-written", (HandAttention,)))
             if any(isinstance(s, kinds) for s in body)}
    if not forms:
        forms.add("no-attention")
    keys = max((key_length(case, s) for s in body), default=0)
    if keys >= LONG:
        forms.add("long")
    if keys > KEY_BLOCK:
        forms.add("key-blocks")
    if any(len(which) > 1 for which in attention_feeds(case).values()):
        forms.add("chained")  # an attention fed by another's output
    return forms


def coverage_areas(case: Case, verdict: Verdict) -> frozenset[str]:
    """The areas of the search a judged program reached, as `kind:value`: its statement
    kinds, the SDPA kernels eager ran, the rewrites Inductor applied, its torch.nn modules,
    its compile mode (and freezing) and size mode, the grad modes and autocast of its
    calls, backward, long sequences (and more keys than a key block) and chained
    attention. Hypothesis's `event`s, and the report's coverage table."""
    kinds = {cls: op for op, cls in STATEMENTS.items()}
    found = {f"statement:{kinds[type(stmt)]}" for stmt in walk(case.program.body)}
    found |= {f"kernel:{k}" for k in verdict.kernels}
    found |= {f"rewrite:{rewrites.short(p)}" for p in verdict.rewrites}
    found |= {f"module:{spec.module}" for _, spec in case.inputs if isinstance(spec, ModuleInput)}
    found.add(f"mode:{case.compile.mode or 'default'}" + ("+freezing" if case.compile.freezing
                                                          else ""))
    sizes = {True: "true", False: "false", None: "automatic"}[case.compile.dynamic]
    found.add(f"dynamic:{sizes}" + ("+marked" if case.compile.mark_dynamic else ""))
    found |= {f"grad-mode:{c.grad_mode}" for c in case.calls if c.grad_mode != "default"}
    found |= {f"autocast:{c.autocast}" for c in case.calls if c.autocast is not None}
    found |= {f"form:{form}" for form in program_forms(case) & {"long", "key-blocks", "chained"}}
    if case.backward:
        found.add("form:backward")
    return frozenset(found)


def form_shares(s: RunStats) -> dict[str, dict[str, float]]:
    """Per form, the programs the search drew: shrinking a finding runs hundreds of
    programs of its one form, which say nothing of where the search goes."""
    drawn = max(s.programs - s.shrink_programs, 1)
    return {form: {"programs": n, "share": round(n / drawn, 3)}
            for form, n in sorted(s.forms.items())}


def rewrite_coverage(s: RunStats) -> dict[str, Any]:
    """Per pattern family of hand-written programs: how many Inductor rewrote into SDPA.
    A family the pass never rewrites tests only Inductor's plain lowering."""
    families = {label: {"programs": n, "rewritten": s.rewrite_hits[label],
                        "share": round(s.rewrite_hits[label] / n, 3)}
                for label, n in sorted(s.rewrite_programs.items())}
    return {"by_family": families, "patterns": dict(s.rewrite_patterns.most_common())}


def kernel_coverage(s: RunStats) -> dict[str, dict[str, int]]:
    """Per SDPA kernel eager ran: cases that ran it, and findings whose case ran it."""
    found = Counter(k for f in s.findings for k in f.get("kernels", ()))
    return {k: {"cases": n, "findings": found[k]} for k, n in s.kernel_cases.most_common()}


def known_hits(s: RunStats) -> dict[str, dict[str, Any]]:
    """Per known bug (corpus entry, or this run's finding): the cases that showed it, the
    signatures it showed under, and the smallest such case."""
    return {entry: {"cases": h["cases"], "signatures": sorted(h["signatures"]),
                    "sample": case_to_dict(h["sample"])}
            for entry, h in sorted(s.known_hits.items())}


def run_report(s: RunStats, backend: str, device: str, seed: int, workers: int
               ) -> dict[str, Any]:
    total = max(s.elapsed, 1e-9)
    busy = total * workers  # each search thread's wall time
    measured = sum(s.timings.phases.values())
    shares = {k: round(v / busy, 4) for k, v in sorted(s.timings.phases.items())}
    # The rest of each search thread's time is Hypothesis's own: drawing and shrinking.
    shares["generation"] = round(max(0.0, busy - measured) / busy, 4)
    return {"backend": backend, "device": device, "torch": torch.__version__, "seed": seed,
            "workers": workers, "examples": s.examples, "programs": s.programs,
            "shrink_programs": s.shrink_programs,
            "elapsed_s": round(s.elapsed, 2), "cases_per_s": round(s.examples / total, 3),
            "programs_per_s": round(s.programs / total, 3),
            "worker_restarts": s.restarts, "interrupted": s.interrupted,
            "checks": dict(s.checks), "failed_checks": dict(s.failed_checks),
            "first_failed_at": s.first_failed_at, "warm_only": dict(s.warm_only),
            "time_share": shares, "program_forms": form_shares(s),
            "coverage": dict(sorted(s.coverage.items())),
            "rewrites": rewrite_coverage(s),
            "kernels": kernel_coverage(s), "excused": dict(s.excused),
            "error_ratio_max": dict(sorted(s.worst_ratio.items())),
            "known_hits": known_hits(s),
            "failures": s.findings, "flaky": s.flaky, "unconfirmed": s.unconfirmed}
