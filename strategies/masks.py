"""Attention masks: none, bool, or additive float (with -inf), in every broadcastable shape."""

from __future__ import annotations

from hypothesis import strategies as st

from fuzz.case import TensorSpec
from strategies.tensors import tensor_specs


@st.composite
def broadcast_shapes(draw: st.DrawFn, full: tuple[int, ...], edges: bool = True
                     ) -> tuple[int, ...]:
    """A shape that broadcasts to `full`: trailing dims kept, each either full or 1.

    The key dim is 1 only one time in eight: such a mask is constant along the keys, so
    softmax cancels whatever it adds and only a fully masked row shows; a mask that can
    change the weights is what most bugs need; never with `edges` False. Shrinks towards
    the plain (L, S) mask.
    """
    rank = draw(st.integers(2, len(full)))
    kept = full[len(full) - rank:]
    ones = draw(st.lists(st.booleans(), min_size=rank - 1, max_size=rank - 1))
    ones.append(edges and draw(st.integers(0, 7)) == 7)
    return tuple(1 if one else n for one, n in zip(ones, kept))


@st.composite
def mask_specs(draw: st.DrawFn, scores_shape: tuple[int, ...], query_dtype: str,
               edges: bool = True) -> TensorSpec:
    """A bool mask (True attends) or a float mask of the query's dtype.

    `full_rows` masks every entry of row 0, the case where softmax has nothing to normalise.
    `edges` False: neither that nor a mask broadcast along the keys (`strategies.swarm`).
    """
    shape = draw(broadcast_shapes(scores_shape, edges))
    dtype = draw(st.sampled_from(("bool", query_dtype)))
    kinds = ("random", "full_rows") if dtype == "bool" else ("additive", "random", "full_rows")
    kinds = kinds if edges else kinds[:-1]
    return draw(tensor_specs(shape, dtype, st.sampled_from(kinds)))
