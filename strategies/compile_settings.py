"""`torch.compile` settings other than the backend, which the user chooses."""

from __future__ import annotations

from hypothesis import strategies as st

from fuzz.case import CompileSpec


@st.composite
def compile_specs(draw: st.DrawFn, backend: str) -> CompileSpec:
    return CompileSpec(backend=backend, fullgraph=draw(st.booleans()),
                       dynamic=draw(st.sampled_from((None, False, True))))
