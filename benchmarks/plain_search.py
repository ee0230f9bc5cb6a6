"""The baseline `detection.py` holds sdpa-fuzz to: a plain random search of SDPA's
arguments, the loop one would write without it.

Each case is one `scaled_dot_product_attention` call with arguments drawn uniformly and
independently (sizes, dtype, layout of the query, mask, causal, scale, dropout, GQA,
backward), compiled afresh and judged by the same oracle in the same worker, with the same
known bugs. No programs, no shrinking, no feedback: what it finds quickly, breadth must
not make sdpa-fuzz find slowly.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Callable

from fuzz.case import Attention, Case, CompileSpec, Program, TensorSpec
from fuzz.corpus import known_bugs_for
from fuzz.identity import features
from fuzz.known import covering
from fuzz.worker import Worker

DTYPES = ("float32", "float64", "bfloat16", "float16")


def plain_case(rng: random.Random, backend: str) -> Case:
    """One SDPA call with every argument drawn uniformly from a small range."""
    batch, heads, length, keys = (rng.randint(1, 3), rng.randint(1, 4),
                                  rng.randint(1, 12), rng.randint(1, 12))
    width, value_width = rng.randint(1, 16), rng.randint(1, 16)
    dtype = rng.choice(DTYPES)
    gqa = rng.random() < 0.25 and heads > 1
    kv_heads = rng.choice([h for h in range(1, heads + 1) if heads % h == 0]) if gqa else heads
    seed = rng.randrange(2**31)
    backward = rng.random() < 0.5

    def tensor(shape: tuple[int, ...], layout: str = "contiguous") -> TensorSpec:
        return TensorSpec(shape, dtype, layout=layout, seed=seed, requires_grad=backward)

    inputs = [("q", tensor((batch, heads, length, width),
                           rng.choice(("contiguous", "transposed")))),
              ("k", tensor((batch, kv_heads, keys, width))),
              ("v", tensor((batch, kv_heads, keys, value_width)))]
    mask_kind = rng.choice((None, "bool", "float"))
    if mask_kind is not None:
        inputs.append(("mask", TensorSpec(
            (length, keys), "bool" if mask_kind == "bool" else dtype,
            "random" if mask_kind == "bool" else "additive", seed=seed)))
    call = Attention("out", mask="mask" if mask_kind else None,
                     dropout_p=rng.choice((0.0, 0.0, 0.0, 0.5)),
                     is_causal=mask_kind is None and rng.random() < 0.5,
                     scale=rng.choice((None, round(rng.uniform(-2.0, 2.0), 3))),
                     enable_gqa=gqa)
    return Case(inputs=tuple(inputs), program=Program(body=(call,), returns=("out",)),
                compile=CompileSpec(backend=backend), backward=backward)


def reaches(condition: Callable[[Case], bool], tries: int = 5000, seed: int = 0) -> bool:
    """Whether the plain search can meet a fault's condition at all."""
    rng = random.Random(seed)
    return any(condition(plain_case(rng, "eager")) for _ in range(tries))


def first_failure(backend: str, condition: Callable[[Case], bool], budget: float,
                  known: tuple[Path, ...], seed: int = 0) -> tuple[int, float] | None:
    """Cases judged and seconds spent up to the first case that meets `condition` and
    fails in a way no known bug covers; None if the budget ends first."""
    bugs = known_bugs_for(backend, known)
    rng, worker, t0 = random.Random(seed), Worker(60.0), time.monotonic()
    try:
        judged = 0
        while time.monotonic() - t0 < budget:
            case = plain_case(rng, backend)
            verdict = list(worker.judge(backend, [case]))[0].verdict
            judged += 1
            found = features(case)
            new = [f for f in verdict.own_failures if covering(bugs, f.key, found) is None]
            if new and condition(case):
                return judged, time.monotonic() - t0
        return None
    finally:
        worker.close()
