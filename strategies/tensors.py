"""Input tensor specs: dtype, value distribution and memory layout for a given shape."""

from __future__ import annotations

from hypothesis import strategies as st

from fuzz.case import FLOAT_DTYPES, LAYOUTS, VALUE_KINDS, TensorSpec


def float_dtypes(device: str = "cpu") -> st.SearchStrategy[str]:
    """float32 first: it is what a shrunk case should fall back to. On CUDA the 16-bit
    dtypes come first, since flash and cuDNN take nothing else."""
    if device == "cuda":
        return st.sampled_from(("float16", "bfloat16", "float32", "float64"))
    return st.sampled_from(FLOAT_DTYPES)


def seeds() -> st.SearchStrategy[int]:
    return st.integers(0, 2**32 - 1)


# The layouts whose last dim has stride 1, as CPU flash requires of q, k and v ("permuted"
# then keeps the last dim last).
UNIT_STRIDE_LAYOUTS = ("contiguous", "permuted", "offset", "expanded")


@st.composite
def layouts(draw: st.DrawFn, shape: tuple[int, ...], equal_rows: bool = True,
            unit_stride: bool = False) -> dict:
    """A layout and its parameters (`perm`, `expand_dim`) as TensorSpec keyword arguments.
    An expand along the rows' dim (-2) makes every row equal, as "repeated" values do:
    equal keys give uniform weights and equal values an output no weight changes, so
    `equal_rows` False (`strategies.swarm`'s "values" edge not taken) expands batch and
    head dims only. `unit_stride`: one of UNIT_STRIDE_LAYOUTS."""
    layout = draw(st.sampled_from(UNIT_STRIDE_LAYOUTS if unit_stride else LAYOUTS))
    if layout == "permuted":
        dims = range(len(shape) - 1 if unit_stride else len(shape))
        perm = tuple(draw(st.permutations(dims))) + ((len(shape) - 1,) if unit_stride else ())
        return {"layout": layout, "perm": perm}
    if layout == "expanded":
        last = len(shape) - (2 if equal_rows or len(shape) < 3 else 3)
        return {"layout": layout, "expand_dim": draw(st.integers(0, last))}
    return {"layout": layout}


@st.composite
def tensor_specs(draw: st.DrawFn, shape: tuple[int, ...], dtype: str,
                 values: st.SearchStrategy[str] = st.sampled_from(VALUE_KINDS),
                 dense: bool = False, equal_rows: bool = True, unit_stride: bool = False
                 ) -> TensorSpec:
    """A spec of any layout; `dense`: contiguous, as the fused CUDA kernels take it;
    `equal_rows` False: no layout that repeats one row, `unit_stride`: only layouts whose
    last dim has stride 1 (`layouts`)."""
    layout = {"layout": "contiguous"} if dense else \
        draw(layouts(shape, equal_rows, unit_stride))
    return TensorSpec(shape=shape, dtype=dtype, values=draw(values), seed=draw(seeds()),
                      **layout)
