"""Measure compiled-error / max(eager error, floor) on clean backends, per backend, dtype
and quantity: the data that the fudge factors and floors in fuzz/tolerance.py are chosen
from, and the margin they leave.

Each generated program is compiled once and run on `--seeds` different input draws, so
5,000 values per dtype cost 100 compiles. For each backend, dtype and quantity (the output,
and each input's gradient as the oracle labels it: grad-q, grad-k, grad-v, grad-mask)
prints the number of values, quantiles, the worst clean ratio, the bound (the fudge factor
the oracle applied) and MARGIN = bound / worst ratio; `fails` counts the variants the
oracle failed (which must be 0 on a clean backend). `--out` keeps the raw ratios as JSON,
with the case that gave each worst ratio (`worst_cases`), to say why it is that high.

    python benchmarks/tolerances.py --backends eager,aot_eager,inductor --programs 100 --seeds 50
    python benchmarks/tolerances.py --backends inductor --backward --programs 100 --seeds 50
    python benchmarks/tolerances.py --backends inductor --grad-mask --programs 40 --seeds 50
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
from fuzz.tolerance import fudge
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


def quantity(label: str) -> str:
    """'float32' -> 'output', 'grad-q:float32' -> 'grad-q'."""
    return label.split(":")[0] if ":" in label else "output"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", "--backend", default="inductor",
                        help="comma-separated clean backends (eager, aot_eager, inductor)")
    parser.add_argument("--programs", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--dtypes", default=",".join(FLOAT_DTYPES))
    parser.add_argument("--backward", action="store_true",
                        help="programs that run backward: a row for the output and one per "
                        "input's gradient")
    parser.add_argument("--grad-mask", action="store_true",
                        help="only programs whose float mask requires grad (implies --backward)")
    parser.add_argument("--out")
    args = parser.parse_args()
    results: dict = {}
    print(f"{'backend':9} {'dtype':8} {'quantity':9} {'values':>6} {'p50':>6} {'p90':>6} "
          f"{'p99':>6} {'p99.9':>6} {'worst':>6} {'bound':>5} {'MARGIN':>7} {'fails':>5} "
          f"{'s':>5}", flush=True)
    for backend in args.backends.split(","):
        for dtype in args.dtypes.split(","):
            t0 = time.perf_counter()
            ratios: dict[str, list[float]] = {}
            worst_case: dict[str, tuple[float, dict]] = {}
            failures: list[dict] = []
            cases = generate(dtype, args.programs, backend, args.backward, args.grad_mask)
            for case in cases:
                program = None
                for salt in range(args.seeds):
                    variant = case.reseeded(salt)
                    run = run_case(variant, backend, warm=program)
                    program = run.program
                    verdict = judge(variant, run)
                    for label, r in verdict.errors:  # 'float32', or 'grad-q:float32'
                        if label.endswith(dtype):
                            q = quantity(label)
                            ratios.setdefault(q, []).append(r)
                            if r > worst_case.get(q, (-1.0, {}))[0]:
                                worst_case[q] = (r, case_to_dict(variant))
                    for f in verdict.failures:
                        failures.append({"signature": f.signature, "detail": f.detail,
                                         "case": case_to_dict(variant)})
                    if run.compiled[0].error is not None:
                        break
            elapsed = time.perf_counter() - t0
            results.setdefault(backend, {})[dtype] = {
                "programs": len(cases), "ratios": ratios, "failures": failures,
                "worst_cases": worst_case}
            for q, values in sorted(ratios.items()):
                # the ratio's bound: the dtype's fudge factor, as the oracle applies it
                # on CPU to outputs and gradients alike (fuzz.tolerance.fudge)
                bound = fudge(dtype)
                worst = max(values, default=math.nan)
                margin = bound / worst if worst > 0 else math.inf
                print(f"{backend:9} {dtype:8} {q:9} {len(values):6d} {quantile(values, .5):6.3f} "
                      f"{quantile(values, .9):6.3f} {quantile(values, .99):6.3f} "
                      f"{quantile(values, .999):6.3f} {worst:6.3f} {bound:5.2g} "
                      f"{margin:7.2f} {len(failures):5d} {elapsed:5.0f}", flush=True)
            for f in failures[:3]:
                print(f"  FAIL {f['signature']}: {f['detail'][:300]}", flush=True)
            if args.out:
                with open(args.out, "w") as fh:
                    json.dump(results, fh)


if __name__ == "__main__":
    main()
