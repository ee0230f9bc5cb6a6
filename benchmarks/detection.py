"""Detection power: run the fuzz driver against each fault-injection backend and print
which faults it finds, how fast, and how small the shrunk case is.

    python benchmarks/detection.py [--budget 120] [--faults a,b] [--workers 2] [--no-plain]

A fault counts as found when a confirmed finding's shrunk case still satisfies the fault's
condition (tests/faults.py: CONDITIONS, REWRITE_CONDITIONS, MODEL_CONDITIONS,
MODE_CONDITIONS, MODULE_CONDITIONS), searched in the space that reaches it. The committed
corpus is
`--known`, as users run it: the torch bugs of docs/findings.md are counted, not reported,
and a fault whose symptom one of them shares must be reported all the same. Speed work
must not lower these numbers.

Beside each fault the plain random search of SDPA's arguments (`plain_search.py`) runs as
the baseline, on the faults it can reach at all: `first` and `plain` are the cases each
judged up to its first failure of the fault (sdpa-fuzz: before shrinking), `first_p` the
programs (compiles) among sdpa-fuzz's cases, the rest being seed variants that reuse a
compile (the plain search has none: each of its cases is a compile), `plain_s` the plain
search's seconds to it; `at_s` is when sdpa-fuzz reported it, shrunk and confirmed.
"""

from __future__ import annotations

import argparse
import contextlib
import math
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=120.0, help="seconds per fault")
    parser.add_argument("--faults", default=",".join(sorted(FAULTS)))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-plain", action="store_true",
                        help="skip the plain random search baseline")
    args = parser.parse_args()
    print(f"{'fault':28} {'found':>5} {'first':>6} {'first_p':>7} {'cases':>6} {'at_s':>7} "
          f"{'inputs':>6} {'json_B':>7} {'plain':>6} {'plain_s':>7}  signature")
    found, firsts = 0, []  # firsts: (sdpa-fuzz cases, its programs, plain) to first failure
    for fault in args.faults.split(","):
        condition = FAULTS[fault]
        backend = f"tests.faults:{fault}"
        plain = "-", "-"
        if not args.no_plain and fault in faults.CONDITIONS and reaches(condition):
            hit = first_failure(backend, condition, args.budget, (CORPUS,), args.seed)
            plain = (str(hit[0]), f"{hit[1]:.1f}") if hit else ("no", "-")
        with tempfile.TemporaryDirectory() as corpus:
            rewrite = fault in faults.REWRITE_CONDITIONS  # Inductor, on hand-written attention
            config = RunConfig(backend=backend, time_budget=args.budget,
                               space=SPACES.get(fault, "sdpa"),
                               seed=args.seed, corpus=Path(corpus), known=(CORPUS,),
                               workers=args.workers, case_timeout=60 if rewrite else 10,
                               stop_when=condition)
            with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
                stats = Fuzzer(config).run()
            hits = [f for f in stats.findings if condition(load_entry(f["case"]).case)]
            first = hits[0]["first_seen_at"] if hits else None
            first_p = hits[0]["first_program_at"] if hits else None
            if plain[0] != "-":
                firsts.append((first or math.inf, first_p or math.inf,
                               int(plain[0]) if plain[0] != "no" else math.inf))
            if not hits:
                print(f"{fault:28} {'no':>5} {'-':>6} {'-':>7} {stats.examples:6d} {'-':>7} "
                      f"{'-':>6} {'-':>7} {plain[0]:>6} {plain[1]:>7}  "
                      f"({len(stats.findings)} other findings)", flush=True)
                continue
            found += 1
            case_path = Path(hits[0]["case"])
            print(f"{fault:28} {'yes':>5} {first:6d} {first_p:7d} {stats.examples:6d} "
                  f"{hits[0]['found_at_s']:7.1f} {len(load_entry(case_path).case.inputs):6d} "
                  f"{case_path.stat().st_size:7d} {plain[0]:>6} {plain[1]:>7}  "
                  f"{hits[0]['signature']}", flush=True)
    print(f"found {found} of {len(args.faults.split(','))} faults")
    if firsts:
        print(f"cases to first failure, median over the {len(firsts)} faults the plain search "
              f"can reach (a miss counts as never): sdpa-fuzz "
              f"{median([a for a, _, _ in firsts])} ({median([p for _, p, _ in firsts])} "
              f"in programs), plain random search {median([b for _, _, b in firsts])}")


if __name__ == "__main__":
    main()
