"""The arguments of one SDPA call other than its tensors: scale, causality, dropout."""

from __future__ import annotations

from hypothesis import strategies as st


EXTREME_SCALES = (1e-6, -1e-6, 1e3, -1e3, 0.0)  # flatten the scores, or saturate them


def scales(extremes: bool = True) -> st.SearchStrategy[float | None]:
    """None (1/sqrt(E)) first; then positive and negative; with `extremes`, tiny, huge and
    zero too."""
    return st.one_of(
        st.none(),
        st.floats(0.01, 4.0),
        st.floats(-4.0, -0.01),
        *([st.sampled_from(EXTREME_SCALES)] if extremes else []),
    )


def dropout_ps() -> st.SearchStrategy[float]:
    """Mostly 0. Above 0 the draws are random, and equal in every run: each call is made
    right after seeding torch's generator (docs/oracle.md, "Dropout: compared under one seed")."""
    return st.one_of(st.just(0.0), st.sampled_from((0.1, 0.5)))
