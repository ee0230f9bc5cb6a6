"""Detection power: run the fuzz driver against each fault-injection backend and print
which faults it finds, how fast, and how small the shrunk case is.

    python benchmarks/detection.py [--budget 120] [--faults a,b] [--workers 2]

A fault counts as found when a confirmed finding's shrunk case still satisfies the fault's
condition (tests/faults.py: CONDITIONS, REWRITE_CONDITIONS, MODEL_CONDITIONS,
MODE_CONDITIONS, MODULE_CONDITIONS), searched in the space that reaches it. The committed
corpus is
`--known`, as users run it: the torch bugs of docs/findings.md are counted, not reported,
and a fault whose symptom one of them shares must be reported all the same. Speed work
must not lower these numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz.corpus import load_entry  # noqa: E402
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=120.0, help="seconds per fault")
    parser.add_argument("--faults", default=",".join(sorted(FAULTS)))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(f"{'fault':28} {'found':>5} {'at_s':>8} {'cases':>6} {'inputs':>6} "
          f"{'json_B':>7}  signature")
    found = 0
    for fault in args.faults.split(","):
        with tempfile.TemporaryDirectory() as corpus:
            condition = FAULTS[fault]
            rewrite = fault in faults.REWRITE_CONDITIONS  # Inductor, on hand-written attention
            config = RunConfig(backend=f"tests.faults:{fault}", time_budget=args.budget,
                               space=SPACES.get(fault, "sdpa"),
                               seed=args.seed, corpus=Path(corpus), known=(CORPUS,),
                               workers=args.workers, case_timeout=60 if rewrite else 10,
                               stop_when=condition)
            with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
                stats = Fuzzer(config).run()
            hits = [f for f in stats.findings if condition(load_entry(f["case"]).case)]
            if not hits:
                print(f"{fault:28} {'no':>5} {'-':>8} {stats.examples:6d}  "
                      f"({len(stats.findings)} other findings)")
                continue
            hit = hits[0]
            case_path = Path(hit["case"])
            entry = load_entry(case_path)
            found += 1
            print(f"{fault:28} {'yes':>5} {hit['found_at_s']:8.1f} "
                  f"{stats.examples:6d} {len(entry.case.inputs):6d} "
                  f"{case_path.stat().st_size:7d}  {hit['signature']}", flush=True)
    print(f"found {found} of {len(args.faults.split(','))} faults")


if __name__ == "__main__":
    main()
