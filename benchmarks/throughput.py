"""Throughput: checked cases per second, sdpa-fuzz's execution path against the naive loop.

    python benchmarks/throughput.py [--programs 12] [--backends eager,aot_eager,inductor]
                                    [--space all] [--workers 2] [--areas]

For each backend, the same generated programs run three ways in this one process tree:
  naive      for each case: torch._dynamo.reset(), a fresh torch.compile, the full check
             (eager, float64 reference, compiled, oracle), in this process;
  fuzz x1    sdpa-fuzz's path: one warm worker process, each program compiled once and
             checked on its seed variants too (variants.VariantPolicy), with every check;
  fuzz xN    the same over N workers, as `sdpa-fuzz run --workers N` runs.
Each path starts from an empty Inductor cache folder and warms it as it goes (a case whose
graph an earlier case compiled hits the FX graph cache, in every path alike).
It prints cases/s and programs/s, the ratio to the naive loop, and the share of wall time
(worker time for the fuzz paths) spent outside eager execution, compilation, compiled
execution and the float64 reference: generation is excluded from all three (the cases
are drawn beforehand), and its cost per case is printed on its own. Ratios, not absolute
times, are comparable across runs on a shared machine.

`--areas` adds, per backend, the cost of breadth: for each coverage area of the run
report (`fuzz.report.coverage_areas`: statement kinds, kernels, rewrites, modules, modes,
backward, long and chained programs) the programs of the `fuzz x1` path that reached it,
their worker seconds per program and cases per second, and that cost over the mean
program's. A program reaches several areas, so the rows overlap.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402

from fuzz.case import Case  # noqa: E402
from fuzz.variants import VariantPolicy  # noqa: E402
from fuzz.execute import Timings, run_case  # noqa: E402
from fuzz.oracle import judge  # noqa: E402
from fuzz.report import coverage_areas  # noqa: E402
from fuzz.worker import Worker  # noqa: E402
from strategies import SPACES, space  # noqa: E402

CORE = ("eager", "compile", "compiled", "reference")


def draw(backend: str, n: int, space_name: str) -> tuple[list[Case], float]:
    """`n` cases of a space as the fuzzer draws them (derandomised), and seconds per case
    to draw."""
    drawn: list[Case] = []

    @settings(max_examples=n, derandomize=True, database=None, deadline=None,
              phases=(Phase.generate,), suppress_health_check=list(HealthCheck))
    @given(space(space_name, backend, "cpu"))
    def collect(case: Case) -> None:
        drawn.append(case)

    t0 = time.perf_counter()
    collect()
    return drawn[:n], (time.perf_counter() - t0) / max(len(drawn), 1)


def fresh_caches() -> dict[str, str]:
    """An empty Inductor cache folder (FX graph, AOTAutograd and autotune caches), so that
    no path starts with the compiled artefacts of another: each warms its own."""
    return {"TORCHINDUCTOR_CACHE_DIR": tempfile.mkdtemp(prefix="sdpa-fuzz-bench-cache-")}


def naive(backend: str, warm_up: Case, programs: list[Case]) -> dict[str, float]:
    os.environ.update(fresh_caches())
    judge(warm_up, run_case(warm_up, backend))
    timings, failures = Timings(), 0
    t0 = time.perf_counter()
    for case in programs:
        failures += not judge(case, run_case(case, backend, timings)).ok
    wall = time.perf_counter() - t0
    core = sum(timings.phases.get(p, 0.0) for p in CORE)
    return {"cases": len(programs), "programs": len(programs), "wall": wall,
            "outside": 1 - core / wall, "failures": failures}


def fuzz_path(backend: str, warm_up: Case, programs: list[Case], workers: int,
              areas: dict[str, list[tuple[int, float]]] | None = None) -> dict[str, float]:
    """The programs split over `workers` workers, each fed by a thread as a search thread
    feeds it. Each worker has judged the warm-up case first, untimed, as the naive loop's
    process has: a long run pays start-up once. `areas`, where given, gets each program's
    (cases, worker seconds) under every coverage area it reached, and under `all`."""
    totals = {"cases": 0, "core": 0.0, "failures": 0}
    lock = threading.Lock()
    pool = [Worker(case_timeout=600, env=fresh_caches()) for _ in range(workers)]
    for worker in pool:
        list(worker.judge(backend, [warm_up]))

    def feed(worker: Worker, share: list[Case]) -> None:
        policy = VariantPolicy()
        try:
            for case in share:
                t0 = time.perf_counter()
                results = list(worker.judge(backend, policy.batch(case)))
                seconds = time.perf_counter() - t0
                policy.learn(results)
                with lock:
                    for area in {"all"} | coverage_areas(case, results[0].verdict) \
                            if areas is not None else ():
                        areas.setdefault(area, []).append((len(results), seconds))
                    totals["cases"] += len(results)
                    totals["failures"] += sum(not r.verdict.ok for r in results)
                    totals["core"] += sum(r.phases.get(p, 0.0) for r in results for p in CORE)
        finally:
            worker.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=feed, args=(pool[i], programs[i::workers]))
               for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"cases": totals["cases"], "programs": len(programs), "wall": wall,
            "outside": 1 - totals["core"] / (wall * workers), "failures": totals["failures"]}


def print_areas(backend: str, areas: dict[str, list[tuple[int, float]]]) -> None:
    """Per area, its programs' cost against the mean program's, dearest first."""
    mean = sum(s for _, s in areas["all"]) / len(areas["all"])
    print(f"{'backend':10} {'area':34} {'progs':>6} {'cases':>6} {'s/prog':>7} {'cases/s':>8} "
          f"{'cost':>6}")
    rows = sorted(areas.items(), key=lambda kv: -sum(s for _, s in kv[1]) / len(kv[1]))
    for area, programs in rows:
        cases_n, seconds = sum(n for n, _ in programs), sum(s for _, s in programs)
        print(f"{backend:10} {area:34} {len(programs):6d} {cases_n:6d} "
              f"{seconds / len(programs):7.2f} {cases_n / seconds:8.2f} "
              f"{seconds / len(programs) / mean:6.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=24,
                        help="generated programs per backend (the size flag; 6 takes about "
                             "a minute in all)")
    parser.add_argument("--backends", default="eager,aot_eager,inductor")
    parser.add_argument("--space", choices=SPACES, default="sdpa")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--areas", action="store_true",
                        help="the cost of each coverage area, on the fuzz x1 path")
    args = parser.parse_args()
    print(f"{'backend':10} {'path':9} {'cases':>6} {'progs':>6} {'cases/s':>8} "
          f"{'progs/s':>8} {'ratio':>7} {'outside':>8} {'fails':>6}")
    for backend in args.backends.split(","):
        (warm_up, *programs), gen_s = draw(backend, args.programs + 1, args.space)
        base = naive(backend, warm_up, programs)
        areas: dict[str, list[tuple[int, float]]] | None = {} if args.areas else None
        rows = [("naive", base), ("fuzz x1", fuzz_path(backend, warm_up, programs, 1, areas))]
        if args.workers > 1:
            rows.append((f"fuzz x{args.workers}",
                         fuzz_path(backend, warm_up, programs, args.workers)))
        for name, r in rows:
            rate = r["cases"] / r["wall"]
            print(f"{backend:10} {name:9} {r['cases']:6d} {r['programs']:6d} {rate:8.2f} "
                  f"{r['programs'] / r['wall']:8.2f} "
                  f"{rate / (base['cases'] / base['wall']):7.2f} {r['outside']:8.1%} "
                  f"{r['failures']:6d}", flush=True)
        print(f"{backend:10} generation: {gen_s * 1000:.1f} ms per case (not in the walls)")
        if areas:
            print_areas(backend, areas)


if __name__ == "__main__":
    main()
