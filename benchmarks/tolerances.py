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


def _mask_requires_grad(case) -> bool:
    return any(name == "mask" and getattr(spec, "requires_grad", False)
               for name, spec in case.inputs)


def generate(dtype: str, n: int, backend: str, backward: bool, grad_mask: bool) -> list:
    drawn = []
    cases = attention_cases(backend, dtypes=st.just(dtype), valid_only=True,
                            backward=st.just(backward or grad_mask))

    @settings(max_examples=n, database=None, derandomize=True, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(cases.filter(_mask_requires_grad) if grad_mask else cases)
    def collect(case):
        if case.program.draws_comparable:
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
    parser.add_argument("--backward", action="store_true",
                        help="programs that run backward: one row per input's gradient")
    parser.add_argument("--grad-mask", action="store_true",
                        help="only programs whose float mask requires grad (implies --backward)")
    parser.add_argument("--out")
    args = parser.parse_args()
    results = {}
    print(f"{'quantity':16} {'values':>7} {'p50':>7} {'p90':>7} {'p99':>7} {'p99.9':>7} {'max':>7}"
          f" {'>fudge':>6} {'fails':>5} {'s':>6}")
    for dtype in args.dtypes.split(","):
        t0 = time.perf_counter()
        ratios: dict[str, list[float]] = {}
        failures: list[dict] = []
        for case in generate(dtype, args.programs, args.backend, args.backward, args.grad_mask):
            program = None
            for salt in range(args.seeds):
                variant = case.reseeded(salt)
                run = run_case(variant, args.backend, warm=program)
                program = run.program
                verdict = judge(variant, run)
                for label, r in verdict.errors:  # 'float32', or 'grad-q:float32'
                    if label.endswith(dtype) and (args.backward or args.grad_mask or label == dtype):
                        ratios.setdefault(label, []).append(r)
                if not verdict.ok:
                    failures.append({"signature": verdict.signature,
                                     "explanation": verdict.explain(),
                                     "case": case_to_dict(variant)})
                if run.compiled[0].error is not None:
                    break
        results[dtype] = {"ratios": ratios, "failures": failures}
        for label, values in sorted(ratios.items()):
            over = sum(r > FUDGE[dtype] for r in values)
            print(f"{label:16} {len(values):7d} {quantile(values, .5):7.3f} "
                  f"{quantile(values, .9):7.3f} {quantile(values, .99):7.3f} "
                  f"{quantile(values, .999):7.3f} {max(values, default=math.nan):7.3f} "
                  f"{over:6d} {len(failures):5d} {time.perf_counter() - t0:6.0f}", flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(results, fh)


if __name__ == "__main__":
    main()
