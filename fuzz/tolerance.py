"""How far compiled may be from float64 truth, relative to how far eager is.

A compiled value passes when its largest error against the float64 reference is at most
`FUDGE[dtype]` times the larger of eager's largest error and `FLOOR[dtype]` times the
reference's magnitude. The numbers were measured on clean backends; docs/oracle.md gives
the distribution they were chosen from.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

EPS = {"float64": 2.0**-52, "float32": 2.0**-23, "bfloat16": 2.0**-7, "float16": 2.0**-10}
FUDGE = {"float64": 4.0, "float32": 4.0, "bfloat16": 4.0, "float16": 4.0}
FLOOR = {"float64": 64 * EPS["float64"], "float32": 64 * EPS["float32"],
         "bfloat16": EPS["bfloat16"], "float16": EPS["float16"]}
TINY = 1e-300


@dataclass(frozen=True)
class ErrorMeasure:
    """Errors of eager and compiled against the reference, and the bound compiled must meet."""

    eager: float
    compiled: float
    base: float
    fudge: float

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


def table() -> dict[str, tuple[float, float]]:
    """dtype -> (fudge, floor), the form a repro script embeds."""
    return {dtype: (FUDGE[dtype], FLOOR[dtype]) for dtype in FUDGE}


def measure(eager: torch.Tensor, compiled: torch.Tensor, reference: torch.Tensor
            ) -> ErrorMeasure | None:
    """Max-abs errors over the positions finite in all three; None when there are none."""
    e, c, r = eager.detach().double(), compiled.detach().double(), reference.detach().double()
    ok = torch.isfinite(e) & torch.isfinite(c) & torch.isfinite(r)
    if not bool(ok.any()):
        return None
    r_ok = r[ok]
    err_e = (e[ok] - r_ok).abs().max().item()
    err_c = (c[ok] - r_ok).abs().max().item()
    dtype = str(eager.dtype).removeprefix("torch.")
    base = max(err_e, FLOOR[dtype] * r_ok.abs().max().item(), TINY)
    return ErrorMeasure(eager=err_e, compiled=err_c, base=base, fudge=FUDGE[dtype])
