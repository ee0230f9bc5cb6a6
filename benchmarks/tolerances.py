"""Measure compiled-error / eager-error on a clean backend, per dtype: the data that the
fudge factors and floors in fuzz/tolerance.py are chosen from.

Each generated program is compiled once and run on `--seeds` different input draws, so
2,000 values per dtype cost a few hundred compiles. Prints quantiles; `--out` keeps the
raw ratios as JSON.

    python benchmarks/tolerances.py --backend inductor --programs 100 --seeds 20
"""

from __future__ import annotations

import argparse
import json
import math
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.case import FLOAT_DTYPES
from fuzz.caseio import case_to_dict
from fuzz.execute import run_case
from fuzz.oracle import judge
from fuzz.tolerance import FUDGE
from strategies.cases import attention_cases


def generate(dtype: str, n: int, backend: str) -> list:
    drawn = []

    @settings(max_examples=n, database=None, derandomize=True, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(attention_cases(backend, dtypes=st.just(dtype), valid_only=True))
    def collect(case):
        if not case.program.has_dropout:
            drawn.append(case)

    collect()
    return drawn


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--programs", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--dtypes", default=",".join(FLOAT_DTYPES))
    parser.add_argument("--out")
    args = parser.parse_args()
    results = {}
    print(f"{'dtype':9} {'values':>7} {'p50':>7} {'p90':>7} {'p99':>7} {'p99.9':>7} {'max':>7}"
          f" {'>fudge':>6} {'fails':>5} {'s':>6}")
    for dtype in args.dtypes.split(","):
        t0 = time.perf_counter()
        ratios: list[float] = []
        failures: list[str] = []
        for case in generate(dtype, args.programs, args.backend):
            program = None
            for salt in range(args.seeds):
                variant = case.reseeded(salt)
                run = run_case(variant, args.backend, warm=program)
                program = run.program
                verdict = judge(variant, run)
                ratios += [r for d, r in verdict.errors if d == dtype]
                if not verdict.ok:
                    failures.append({"signature": verdict.signature,
                                     "explanation": verdict.explain(),
                                     "case": case_to_dict(variant)})
                if run.compiled[0].error is not None:
                    break
        results[dtype] = {"ratios": ratios, "failures": failures}
        over = sum(r > FUDGE[dtype] for r in ratios)
        print(f"{dtype:9} {len(ratios):7d} {quantile(ratios, .5):7.3f} {quantile(ratios, .9):7.3f}"
              f" {quantile(ratios, .99):7.3f} {quantile(ratios, .999):7.3f} "
              f"{max(ratios, default=math.nan):7.3f} {over:6d} {len(failures):5d}"
              f" {time.perf_counter() - t0:6.0f}", flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(results, fh)


if __name__ == "__main__":
    main()
