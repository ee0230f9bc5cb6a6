"""`torch.compile` settings other than the backend, which the user chooses."""

from __future__ import annotations

from hypothesis import strategies as st

from fuzz.case import CompileSpec


@st.composite
def compile_specs(draw: st.DrawFn, backend: str, allow_dynamic: bool = True) -> CompileSpec:
    """`allow_dynamic=False` leaves out `dynamic=True`, for programs the frame model has no
    rule for under it (an SDPAParams input)."""
    dynamic = (None, False, True) if allow_dynamic else (None, False)
    return CompileSpec(backend=backend, fullgraph=draw(st.booleans()),
                       dynamic=draw(st.sampled_from(dynamic)))
