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


@st.composite
def layouts(draw: st.DrawFn, shape: tuple[int, ...]) -> dict:
    """A layout and its parameters (`perm`, `expand_dim`) as TensorSpec keyword arguments."""
    layout = draw(st.sampled_from(LAYOUTS))
    if layout == "permuted":
        return {"layout": layout, "perm": tuple(draw(st.permutations(range(len(shape)))))}
    if layout == "expanded":
        return {"layout": layout, "expand_dim": draw(st.integers(0, len(shape) - 2))}
    return {"layout": layout}


@st.composite
def tensor_specs(draw: st.DrawFn, shape: tuple[int, ...], dtype: str,
                 values: st.SearchStrategy[str] = st.sampled_from(VALUE_KINDS),
                 dense: bool = False) -> TensorSpec:
    """A spec of any layout; `dense`: contiguous, as the fused CUDA kernels take it."""
    layout = {"layout": "contiguous"} if dense else draw(layouts(shape))
    return TensorSpec(shape=shape, dtype=dtype, values=draw(values), seed=draw(seeds()),
                      **layout)
