"""`torch.compile` settings other than the backend, which the user chooses."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import strategies as st

from fuzz.case import CompileSpec

# Inductor's modes that change what it generates: autotuned kernels (on the CPU, its GEMM
# templates). Drawn one time in MODE_ODDS, since autotuning may cost several compiles.
# Not `reduce-overhead` (CUDA graphs, whose outputs a later call overwrites): no GPU run
# has checked the oracle against it yet.
INDUCTOR_MODES = ("max-autotune-no-cudagraphs",)
MODE_ODDS = 16


@st.composite
def compile_specs(draw: st.DrawFn, backend: str, allow_dynamic: bool = True,
                  allow_marks: bool = False) -> CompileSpec:
    """`allow_dynamic=False` leaves out `dynamic=True`, for programs the frame model has no
    rule for under it (an SDPAParams input). `allow_marks`: sometimes `mark_dynamic` on the
    sequence lengths, for single SDPA calls (the only ones whose lengths are known). A
    mode only for Inductor: torch.compile hands any other backend the mode as an option
    it may not take."""
    dynamic = (None, False, True) if allow_dynamic else (None, False)
    spec = CompileSpec(backend=backend, fullgraph=draw(st.booleans()),
                       dynamic=draw(st.sampled_from(dynamic)),
                       mark_dynamic=allow_marks and draw(st.booleans()))
    if backend == "inductor" and draw(st.integers(0, MODE_ODDS - 1)) == MODE_ODDS - 1:
        return replace(spec, mode=draw(st.sampled_from(INDUCTOR_MODES)))
    return spec
