"""How far compiled may be from float64 truth, relative to how far eager is.

A compiled value passes when its largest error against the float64 reference is at most
`FUDGE[dtype]` times the larger of eager's largest error and a floor: the larger of
`FLOOR[dtype]` times the reference's magnitude (rounding the output) and
`SCORE_FLOOR[dtype]` times the conditioning of the attention scores times the magnitude
of the values summed (computing the scores and their weighted sum at the kernels'
working precision, float32 for the 16-bit dtypes). The numbers were
measured on clean backends; docs/oracle.md gives the distribution they were chosen from.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fuzz.kernels import FUSED

EPS = {"float64": 2.0**-52, "float32": 2.0**-23, "bfloat16": 2.0**-7, "float16": 2.0**-10}
FUDGE = {"float64": 3.0, "float32": 3.0, "bfloat16": 3.0, "float16": 3.0}
FLOOR = {"float64": 8 * EPS["float64"], "float32": 8 * EPS["float32"],
         "bfloat16": EPS["bfloat16"] / 2, "float16": EPS["float16"] / 2}
SCORE_FLOOR = {"float64": 8 * EPS["float64"], "float32": 8 * EPS["float32"],
               "bfloat16": 8 * EPS["float32"], "float16": 8 * EPS["float32"]}
# A gradient is a sum of terms; a fused backward (flash attention's, which Inductor's
# rewrite of hand-written attention calls) rounds the terms' factors (P, dS) to a 16-bit
# input's own dtype before its matmuls: half an ulp of each term. Hand-written bfloat16
# attention with two equal keys has a query gradient of exactly 0, eager's too; the
# rewritten one had 0.0019 (0.0006 of its terms' bound): eight float32 ulps of the terms
# would have allowed 3e-6.
GRAD_FLOOR = {"float64": SCORE_FLOOR["float64"], "float32": SCORE_FLOOR["float32"],
              "bfloat16": FLOOR["bfloat16"], "float16": FLOOR["float16"]}
# The spacing of the dtype's subnormals: below the smallest normal number, rounding is
# absolute, so a floor relative to the output's magnitude alone would allow no rounding
# at all there. The absolute floor is that spacing times 8 for float64 and float32, and
# one whole step (not the half of FLOOR) for the 16-bit dtypes: a hand-written float16
# program was seen one subnormal step from float64 where eager was exact (docs/oracle.md).
SUBNORMAL = {"float64": 2.0**-1074, "float32": 2.0**-149, "bfloat16": 2.0**-133,
             "float16": 2.0**-24}
ABS_FLOOR = {"float64": 8 * SUBNORMAL["float64"], "float32": 8 * SUBNORMAL["float32"],
             "bfloat16": SUBNORMAL["bfloat16"], "float16": SUBNORMAL["float16"]}
TINY = 1e-300
# The fused CUDA kernels' backward sums the query's (and with GQA the key's and value's)
# gradient with atomics in no fixed order, so two runs of one kernel on equal inputs
# differ, and eager's error is one draw of a spread that compiled draws again. PyTorch's
# own tests allow these gradients 8 (value) to 160 (query) times the error of math at low
# precision (test_transformers.py); against the same kernel's own eager run, 8 suffices.
FUSED_GRAD_FUDGE = 8.0


@dataclass(frozen=True)
class ErrorMeasure:
    """Errors of eager and compiled against the reference, and the bound compiled must meet."""

    eager: float
    compiled: float
    base: float
    fudge: float
    floor: float = 0.0  # what `base` is without eager's error: the bound's own part

    @property
    def allowed(self) -> float:
        return self.fudge * self.base

    @property
    def ratio(self) -> float:
        """compiled error / max(eager error, floor): the quantity the fudge factor bounds."""
        return self.compiled / self.base

    @property
    def passes(self) -> bool:
        return self.compiled <= self.allowed


def fudge(dtype: str, kernels: tuple[str, ...] = (), gradient: bool = False) -> float:
    """The factor for a value of `dtype` from a program whose SDPA ran `kernels` in eager."""
    fused = gradient and any(k in FUSED for k in kernels)
    return max(FUDGE[dtype], FUSED_GRAD_FUDGE) if fused else FUDGE[dtype]


def score_conditioning(query: torch.Tensor, key: torch.Tensor, scale: float | None) -> float:
    """An upper bound on sum_i |scale * q_i * k_i| over the score dot products (the worst
    query row's; `row_conditioning` gives each row's).

    Any implementation computing the scores in a given precision may be off by about eps
    times this, and softmax passes that absolute error on to the output; so two correct
    implementations can differ by that much however accurate one of them happens to be.
    """
    q, k = query.detach().double().abs(), key.detach().double().abs()
    if q.numel() == 0 or k.numel() == 0:
        return 1.0
    s = abs(scale) if scale is not None else q.size(-1) ** -0.5
    return s * q.sum(-1).max().item() * k.max().item()


def row_conditioning(query: torch.Tensor, key: torch.Tensor, scale: float | None
                     ) -> torch.Tensor:
    """`score_conditioning` for each query row, shaped (..., L, 1) to broadcast over the
    output's rows: a row's scores, and so its output row, carry rounding of eps times
    its own bound, not the worst row's."""
    q, k = query.detach().double().abs(), key.detach().double().abs()
    if q.size(-1) == 0 or k.numel() == 0:  # no products to sum
        return torch.zeros(q.shape[:-1] + (1,), dtype=torch.float64, device=q.device)
    s = abs(scale) if scale is not None else q.size(-1) ** -0.5
    return s * q.sum(-1, keepdim=True) * k.max()


def coarsest(dtype: str, precision: str | None) -> str:
    """The less precise of an output's dtype and the precision its program casts through."""
    return dtype if precision is None or EPS[precision] <= EPS[dtype] else precision


def measure(eager: torch.Tensor, compiled: torch.Tensor, reference: torch.Tensor,
            conditioning: float | torch.Tensor = 1.0, precision: str | None = None,
            terms: float = 0.0, factor: float | None = None, averaged: float = 0.0,
            rounding: float = 0.0, scores_rounded: bool = False) -> ErrorMeasure | None:
    """Max-abs errors: eager's over the positions finite in all three, compiled's over
    those where it and the reference are finite (including where eager overflowed); None
    when there are none. The floor is the larger of rounding the output (`FLOOR` times its
    magnitude) and computing the scores and their weighted sum at the working precision
    (`SCORE_FLOOR` times the conditioning, at least 1 for the sum itself, times the
    magnitude summed: the output's, or `averaged` where larger). `conditioning`: the score
    conditioning, one number, or one per output row (a tensor that broadcasts to the
    output with a trailing dim of 1); per row, each row's floor is its own conditioning
    and magnitudes, and the measure is that of the worst row. `precision`: the coarsest dtype the program casts its values
    through, which rounds the float64 run too, so that it bounds what any implementation
    can be held to. `terms`: for a gradient, the bound on the magnitude of the terms
    summed into it (`gradient_bounds`), which takes the place of the output's magnitude
    in the score floor, at the gradient's own precision (`GRAD_FLOOR`). `factor`: the fudge factor, if not the dtype's own (`fudge`).
    `averaged`: for an attention's own output, the largest magnitude of the values it
    averages: a row whose weighted values cancel is small, but its sum was rounded at the
    magnitude of its terms (a float64 SDPA output 22 ulps from float64 truth where values
    of 3e-4 cancelled to 1e-4 failed a floor relative to the output alone). `rounding`:
    how far the float64 run moves when SDPA's computed operands are rounded to the case's
    16-bit dtype (`fuzz.calls.operand_rounding`), a floor of its own: an error any
    implementation of the program makes, which eager's may miss by luck.
    `scores_rounded`: the scores are known only to the output's own dtype's precision:
    materialized in it (`nn.MultiheadAttention` returning its weights: `baddbmm`, softmax
    and `bmm` in that dtype), or computed from a query another attention's rounded output
    feeds (a decoder layer's cross-attention). Each score is then off by up to that
    dtype's eps of its magnitude, which the conditioning bounds, where the kernels'
    float32 bounds nothing: a bfloat16 module with scores of 131 (spacing 1) was 0.47 off
    in a score difference compiled, 0.03 eager."""
    e, c, r = eager.detach().double(), compiled.detach().double(), reference.detach().double()
    ok_c = torch.isfinite(c) & torch.isfinite(r)
    ok = ok_c & torch.isfinite(e)
    if not bool(ok_c.any()):
        return None
    err_e = (e[ok] - r[ok]).abs().max().item() if bool(ok.any()) else 0.0
    dtype = coarsest(str(eager.dtype).removeprefix("torch."), precision)
    fudge = FUDGE[dtype] if factor is None else factor
    least = max(GRAD_FLOOR[dtype] * terms, ABS_FLOOR[dtype], TINY, rounding)
    score_eps = max(SCORE_FLOOR[dtype], EPS[dtype]) if scores_rounded else SCORE_FLOOR[dtype]
    if isinstance(conditioning, torch.Tensor):
        magnitude = torch.where(ok_c, r.abs(), 0.0).amax(-1, keepdim=True)
        summed = score_eps * torch.clamp(conditioning.double(), min=1.0) \
            * torch.clamp(magnitude, min=averaged)
        floors = torch.clamp(torch.maximum(FLOOR[dtype] * magnitude, summed),
                             min=least).expand_as(r)
        err = torch.where(ok_c, (c - r).abs(), 0.0)
        worst = int((err / torch.clamp(floors, min=err_e)).flatten().argmax())
        floor = floors.flatten()[worst].item()
        return ErrorMeasure(eager=err_e, compiled=err.flatten()[worst].item(),
                            base=max(floor, err_e), fudge=fudge, floor=floor)
    err_c = (c[ok_c] - r[ok_c]).abs().max().item()
    magnitude = r[ok_c].abs().max().item()
    floor = max(FLOOR[dtype] * magnitude, least, score_eps * max(conditioning, 1.0)
                * max(magnitude, averaged))
    return ErrorMeasure(eager=err_e, compiled=err_c, base=max(floor, err_e), fudge=fudge,
                        floor=floor)


def measure_exact(eager: torch.Tensor, compiled: torch.Tensor, ops: int) -> ErrorMeasure | None:
    """For a value no attention feeds (an input after its mutations, a shifted input):
    compiled against eager itself, allowed `ops` ulps of the dtype at eager's largest
    magnitude, one per elementwise op that may round differently (a fused chain rounds
    once where eager rounds after each op; a contracted multiply-add, once for two). No
    conditioning, no float64: both ran the same few exact-as-possible ops."""
    e, c = eager.detach().double(), compiled.detach().double()
    ok = torch.isfinite(e) & torch.isfinite(c)
    if not bool(ok.any()):
        return None
    dtype = str(eager.dtype).removeprefix("torch.")
    err = (c[ok] - e[ok]).abs().max().item()
    base = max(ops * EPS[dtype] * e[ok].abs().max().item(), ops * SUBNORMAL[dtype], TINY)
    return ErrorMeasure(eager=0.0, compiled=err, base=base, fudge=1.0, floor=base)


def gradient_bounds(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                    scale: float | None, upstream: float) -> dict[str, float]:
    """Per input role, a bound on the sum of the magnitudes of the terms that attention's
    backward adds up to one element of its gradient.

    A gradient is a sum with cancellation (`dS = P * (dP - rowsum(dP * P))`), so its own
    magnitude says nothing about the rounding in it; the terms' magnitudes do. With
    `dP[i, j] = g[i] . v[j]` bounded by `D = |g| * max_j sum|v[j]|` and `|dS[i, j]| <=
    2 D P[i, j]`, and since every row of P sums to 1 whatever the mask: the query's terms
    sum to at most `2 |scale| D max|k|` (no factor of S: the row's weights share the 1;
    times the copies where a query broadcasts over the key's batch).
    A column of P sums to at most L (to G L where G query heads share a key head), which
    is all that is known without the mask: the key's terms by `2 |scale| G L D max|q|`,
    the value's by `G L |g|`; an additive mask's element is one term of `dS`, `2 D`. Any
    implementation computing in a precision may be off by about its eps times these.
    """
    q, k, v = (t.detach().double().abs() for t in (query, key, value))
    if min(q.numel(), k.numel(), v.numel()) == 0:
        return {}
    s = abs(scale) if scale is not None else q.size(-1) ** -0.5
    L = q.size(-2)
    rows_q = q.numel() // max(1, q.size(-1) * L)  # batch x heads
    rows_k = k.numel() // max(1, k.size(-1) * k.size(-2))
    group, q_group = max(1, rows_q // max(1, rows_k)), max(1, rows_k // max(1, rows_q))
    d_p = upstream * v.sum(-1).max().item()
    return {"query": 2 * s * q_group * d_p * k.max().item(),
            "key": 2 * s * group * L * d_p * q.max().item(),
            "value": group * L * upstream, "mask": 2 * d_p}
