"""`torch.compile` settings other than the backend, which the user chooses."""

from __future__ import annotations

from hypothesis import strategies as st

from fuzz.case import CompileSpec


@st.composite
def compile_specs(draw: st.DrawFn, backend: str, allow_dynamic: bool = True,
                  allow_marks: bool = False) -> CompileSpec:
    """`allow_dynamic=False` leaves out `dynamic=True`, for programs the frame model has no
    rule for under it (an SDPAParams input). `allow_marks`: sometimes `mark_dynamic` on the
    sequence lengths, for single SDPA calls (the only ones whose lengths are known)."""
    dynamic = (None, False, True) if allow_dynamic else (None, False)
    return CompileSpec(backend=backend, fullgraph=draw(st.booleans()),
                       dynamic=draw(st.sampled_from(dynamic)),
                       mark_dynamic=allow_marks and draw(st.booleans()))
