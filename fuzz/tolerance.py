"""How far compiled may be from float64 truth, relative to how far eager is.

A compiled value passes when its largest error against the float64 reference is at most
`FUDGE[dtype]` times the larger of eager's largest error and `FLOOR[dtype]` times the
reference's magnitude. The numbers were measured on clean backends; docs/oracle.md gives
the distribution they were chosen from.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

FUDGE = {"float64": 8.0, "float32": 8.0, "bfloat16": 8.0, "float16": 8.0}
FLOOR = {"float64": 1e-13, "float32": 2e-6, "bfloat16": 1.6e-2, "float16": 2e-3}
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
