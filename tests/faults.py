"""Fault-injection backends: each is the `eager` backend, wrong under exactly one condition.

Every SDPA call in the captured graph is routed through the fault, which looks at the real
arguments at run time and, only when its condition holds, computes something subtly wrong
in the way a real compiler bug would. Use them as `--backend tests.faults:<name>`.

`CONDITIONS` maps each fault to a predicate on a Case: the oracle's shrunk case for that
fault must still satisfy it, which is how the tests show that a report names its cause.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import torch
import torch.nn.functional as F

from fuzz.case import Case

SDPA = F.scaled_dot_product_attention


@dataclass(frozen=True)
class Call:
    """The arguments of one SDPA call, as the compiled graph passes them."""

    query: torch.Tensor
    key: torch.Tensor
    value: torch.Tensor
    attn_mask: torch.Tensor | None = None
    dropout_p: float = 0.0
    is_causal: bool = False
    scale: float | None = None
    enable_gqa: bool = False

    def run(self, **changes) -> torch.Tensor:
        c = replace(self, **changes)
        return SDPA(c.query, c.key, c.value, attn_mask=c.attn_mask, dropout_p=c.dropout_p,
                    is_causal=c.is_causal, scale=c.scale, enable_gqa=c.enable_gqa)


Fault = Callable[[Call], "torch.Tensor | None"]


def fault_backend(fault: Fault) -> Callable:
    """A backend that runs the graph eagerly, with each SDPA call passed through `fault`
    (which returns None where its condition does not hold)."""

    def faulty_sdpa(*args, **kwargs):
        call = Call(*args, **kwargs)
        wrong = fault(call)
        return call.run() if wrong is None else wrong

    def backend(gm: torch.fx.GraphModule, example_inputs):
        for node in gm.graph.nodes:
            if node.op == "call_function" and node.target is SDPA:
                node.target = faulty_sdpa
        gm.recompile()
        return gm.forward

    backend.__name__ = fault.__name__
    return backend


def _negative_scale(c: Call):
    """A negative scale is dropped and the default 1/sqrt(E) used."""
    return c.run(scale=None) if c.scale is not None and c.scale < 0 else None


def _gqa_tiled(c: Call):
    """GQA key/value heads repeated by tiling (h0 h1 h0 h1) instead of interleaving."""
    hq, hk = c.query.size(-3), c.key.size(-3)
    if not c.enable_gqa or hq == hk or hk == 1:
        return None
    reps = [1] * c.key.dim()
    reps[-3] = hq // hk
    return c.run(key=c.key.repeat(*reps), value=c.value.repeat(*reps), enable_gqa=False)


def _causal_bottom_right(c: Call):
    """is_causal with L != S aligned to the bottom-right corner instead of the top-left."""
    L, S = c.query.size(-2), c.key.size(-2)
    if not c.is_causal or L == S:
        return None
    mask = torch.ones(L, S, dtype=torch.bool, device=c.query.device).tril(diagonal=S - L)
    return c.run(attn_mask=mask, is_causal=False)


def _single_query_ignores_mask(c: Call):
    """A decode-style fast path for L == 1 that forgets the mask."""
    return c.run(attn_mask=None) if c.query.size(-2) == 1 and c.attn_mask is not None else None


def _float_mask_as_bool(c: Call):
    """An additive float mask treated as a keep/drop mask, losing its finite values."""
    m = c.attn_mask
    if m is None or m.dtype == torch.bool:
        return None
    return c.run(attn_mask=m != float("-inf"))


def _masked_rows_nan(c: Call):
    """Rows whose bool mask attends to nothing come out NaN (eager gives zeros)."""
    m = c.attn_mask
    if m is None or m.dtype != torch.bool:
        return None
    out = c.run()
    dead = ~m.any(-1, keepdim=True)
    return out.masked_fill(dead.expand(out.shape[:-1] + (1,)).expand(out.shape), float("nan")) \
        if bool(dead.any()) else None


def _odd_head_dim_scale(c: Call):
    """The default scale computed from E - 1 when the head dim E is odd."""
    E = c.query.size(-1)
    if c.scale is not None or E % 2 == 0 or E == 1:
        return None
    return c.run(scale=1 / math.sqrt(E - 1))


def _transposed_query_misread(c: Call):
    """A query whose last dim is not unit-stride read as if it were laid out contiguously."""
    q = c.query
    if q.stride(-1) == 1 or q.size(-1) == 1 or q.size(-2) == 1:
        return None
    return c.run(query=q.transpose(-1, -2).reshape(q.shape))


def _bf16_low_precision(c: Call):
    """bfloat16 attention whose result is off by 5%, as if accumulated in bfloat16."""
    return (c.run().float() * 1.05).to(torch.bfloat16) if c.query.dtype == torch.bfloat16 \
        else None


def _half_output_upcast(c: Call):
    """float16 attention that returns float32."""
    return c.run().float() if c.query.dtype == torch.float16 else None


negative_scale = fault_backend(_negative_scale)
gqa_tiled = fault_backend(_gqa_tiled)
causal_bottom_right = fault_backend(_causal_bottom_right)
single_query_ignores_mask = fault_backend(_single_query_ignores_mask)
float_mask_as_bool = fault_backend(_float_mask_as_bool)
masked_rows_nan = fault_backend(_masked_rows_nan)
odd_head_dim_scale = fault_backend(_odd_head_dim_scale)
transposed_query_misread = fault_backend(_transposed_query_misread)
bf16_low_precision = fault_backend(_bf16_low_precision)
half_output_upcast = fault_backend(_half_output_upcast)


def _attention(case: Case):
    return case.program.body[0]


def _mask(case: Case):
    name = _attention(case).mask
    return case.spec(name) if name else None


CONDITIONS: dict[str, Callable[[Case], bool]] = {
    "negative_scale": lambda c: (_attention(c).scale or 0.0) < 0,
    "gqa_tiled": lambda c: _attention(c).enable_gqa and c.spec("k").shape[-3] > 1
    and c.spec("q").shape[-3] > c.spec("k").shape[-3],
    "causal_bottom_right": lambda c: _attention(c).is_causal
    and c.spec("q").shape[-2] != c.spec("k").shape[-2],
    "single_query_ignores_mask": lambda c: c.spec("q").shape[-2] == 1 and _mask(c) is not None,
    "float_mask_as_bool": lambda c: _mask(c) is not None and _mask(c).dtype != "bool",
    "masked_rows_nan": lambda c: _mask(c) is not None and _mask(c).dtype == "bool",
    "odd_head_dim_scale": lambda c: _attention(c).scale is None and c.spec("q").shape[-1] % 2 == 1,
    "transposed_query_misread": lambda c: c.spec("q").layout in ("transposed", "permuted",
                                                                  "strided"),
    "bf16_low_precision": lambda c: c.spec("q").dtype == "bfloat16",
    "half_output_upcast": lambda c: c.spec("q").dtype == "float16",
}
