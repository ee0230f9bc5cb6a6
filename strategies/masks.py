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
    `edges` False: no mask broadcast along the keys, and no fully masked row where it is
    every row (one query row, or a mask broadcast along the queries), which hides every
    fault (`strategies.swarm`). Beside other rows, a fully masked row hides nothing: as a
    padded batch has it, it is where plain calls show fully-masked-row bugs, which a
    random mask over 2 to 8 keys seldom draws (13 of 200 plain calls showed such a fault,
    19 of the plain random search's, whose masks cover 1 to 12 keys).
    """
    shape = draw(broadcast_shapes(scores_shape, edges))
    dtype = draw(st.sampled_from(("bool", query_dtype)))
    kinds = ("random", "full_rows") if dtype == "bool" else ("additive", "random", "full_rows")
    kinds = kinds if edges or shape[-2] > 1 else kinds[:-1]
    return draw(tensor_specs(shape, dtype, st.sampled_from(kinds)))
