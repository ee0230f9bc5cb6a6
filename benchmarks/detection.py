"""Detection power: run the fuzz driver against each fault-injection backend and print
which faults it finds, how fast, and how small the shrunk case is.

    python benchmarks/detection.py [--budget 120] [--faults a,b] [--seeds 0,1,2]
                                   [--workers 2] [--jobs 1] [--no-plain]

A fault counts as found when a confirmed finding's shrunk case still satisfies the fault's
condition (tests/faults.py: CONDITIONS, REWRITE_CONDITIONS, MODEL_CONDITIONS,
MODE_CONDITIONS, MODULE_CONDITIONS), searched in the space that reaches it. The committed
corpus is
`--known`, as users run it: the torch bugs of docs/findings.md are counted, not reported,
and a fault whose symptom one of them shares must be reported all the same. Speed work
must not lower these numbers.

Beside each fault the plain random search of SDPA's arguments (`plain_search.py`) runs as
the baseline, on the faults it can reach at all: `first` and `plain` are the cases each
judged up to its first failure of the fault (sdpa-fuzz: before shrinking; the earliest
of the fault's findings, which may come in several forms), `first_p` the
programs (compiles) among sdpa-fuzz's cases, the rest being seed variants that reuse a
compile (the plain search has none: each of its cases is a compile), `plain_s` the plain
search's seconds to it; `at_s` is when sdpa-fuzz reported it, shrunk and confirmed.

Each seed gives both searches one sequence of cases, which every fault then meets: at
one seed, a first failure at case 2 or 6 is mostly the luck of that sequence. Several
seeds (`--seeds`) give each fault several sequences, and the medians are taken over
every (fault, seed) pair, with each seed's median printed too. `--jobs` runs that many
(fault, seed) searches at once, each in a process of its own: the counts of cases do not
depend on the load, only the seconds do, so give a longer `--budget` when the CPUs are
shared.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import math
import multiprocessing
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz.corpus import load_entry  # noqa: E402
from benchmarks.plain_search import first_failure, reaches  # noqa: E402
from fuzz.driver import Fuzzer, RunConfig  # noqa: E402
from tests import faults  # noqa: E402

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
FAULTS = {**faults.CONDITIONS, **faults.REWRITE_CONDITIONS, **faults.MODEL_CONDITIONS,
          **faults.MODE_CONDITIONS, **faults.MODULE_CONDITIONS,
          "crash_or_hang": lambda case: any(
              condition(case) for condition in faults.PROCESS_CONDITIONS.values()),
          # a compiler crash whose coarse signature known torch bugs share
          "compile_crash_negative_scale": faults.CONDITIONS["negative_scale"]}
# The space each fault is searched in (default `sdpa`, which global modes are part of).
SPACES = {**{f: "handwritten" for f in faults.REWRITE_CONDITIONS},
          **{f: "models" for f in faults.MODEL_CONDITIONS},
          **{f: "modules" for f in faults.MODULE_CONDITIONS}}


def median(values: list[float]) -> float:
    """The median, where a search that missed counts as infinitely late."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def search(fault: str, seed: int, args: argparse.Namespace
           ) -> tuple[str, bool, tuple | None]:
    """One fault at one seed: its table row, whether sdpa-fuzz found it, and its
    (sdpa-fuzz cases, programs, plain cases) to first failure where the plain search can
    reach it (None otherwise)."""
    condition = FAULTS[fault]
    backend = f"tests.faults:{fault}"
    plain = "-", "-"
    if not args.no_plain and fault in faults.CONDITIONS and reaches(condition):
        hit = first_failure(backend, condition, args.budget, (CORPUS,), seed)
        plain = (str(hit[0]), f"{hit[1]:.1f}") if hit else ("no", "-")
    with tempfile.TemporaryDirectory() as corpus:
        rewrite = fault in faults.REWRITE_CONDITIONS  # Inductor, on hand-written attention
        config = RunConfig(backend=backend, time_budget=args.budget,
                           space=SPACES.get(fault, "sdpa"),
                           seed=seed, corpus=Path(corpus), known=(CORPUS,),
                           workers=args.workers, case_timeout=60 if rewrite else 10,
                           stop_when=condition)
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
            stats = Fuzzer(config).run()
        hits = [f for f in stats.findings if condition(load_entry(f["case"]).case)]
        # The fault's earliest failure: a search may meet the fault in several forms (keys),
        # and the one confirmed first need not be the one seen first; the run stops at
        # that one, leaving the others unconfirmed.
        seen = sorted((f for f in stats.findings + stats.unconfirmed
                       if condition(load_entry(f["case"]).case)),
                      key=lambda f: f["first_seen_at"])
        first = seen[0]["first_seen_at"] if hits else None
        first_p = seen[0]["first_program_at"] if hits else None
        pair = None if plain[0] == "-" else (
            first or math.inf, first_p or math.inf,
            int(plain[0]) if plain[0] != "no" else math.inf)
        name = f"{fault}@{seed}"
        if not hits:
            return (f"{name:30} {'no':>5} {'-':>6} {'-':>7} {stats.examples:6d} {'-':>7} "
                    f"{'-':>6} {'-':>7} {plain[0]:>6} {plain[1]:>7}  "
                    f"({len(stats.findings)} other findings)"), False, pair
        case_path = Path(hits[0]["case"])
        return (f"{name:30} {'yes':>5} {first:6d} {first_p:7d} {stats.examples:6d} "
                f"{min(f['found_at_s'] for f in hits):7.1f} "
                f"{len(load_entry(case_path).case.inputs):6d} "
                f"{case_path.stat().st_size:7d} {plain[0]:>6} {plain[1]:>7}  "
                f"{hits[0]['signature']}"), True, pair


def medians(pairs: list[tuple]) -> str:
    return (f"sdpa-fuzz {median([a for a, _, _ in pairs])} "
            f"({median([p for _, p, _ in pairs])} in programs), "
            f"plain random search {median([b for _, _, b in pairs])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=120.0, help="seconds per fault")
    parser.add_argument("--faults", default=",".join(sorted(FAULTS)))
    parser.add_argument("--seeds", default="0", help="comma-separated; each fault runs at each")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=1,
                        help="(fault, seed) searches run at once, one process each")
    parser.add_argument("--no-plain", action="store_true",
                        help="skip the plain random search baseline")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"{'fault@seed':30} {'found':>5} {'first':>6} {'first_p':>7} {'cases':>6} "
          f"{'at_s':>7} {'inputs':>6} {'json_B':>7} {'plain':>6} {'plain_s':>7}  signature")
    found, runs = 0, 0
    pairs: dict[int, list[tuple]] = {seed: [] for seed in seeds}
    todo = [(fault, seed) for seed in seeds for fault in args.faults.split(",")]
    with concurrent.futures.ProcessPoolExecutor(
            args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        searches = [pool.submit(search, fault, seed, args) for fault, seed in todo]
        for (fault, seed), done in zip(todo, searches):
            row, hit, pair = done.result()
            print(row, flush=True)
            runs += 1
            found += hit
            if pair is not None:
                pairs[seed].append(pair)
    print(f"found {found} of {runs} (fault, seed) searches")
    every = [p for seed in seeds for p in pairs[seed]]
    if every:
        print(f"cases to first failure, median over the {len(every)} (fault, seed) pairs the "
              f"plain search can reach (a miss counts as never): {medians(every)}")
        for seed in seeds if len(seeds) > 1 else ():
            print(f"  seed {seed}: {medians(pairs[seed])}")


if __name__ == "__main__":
    main()
