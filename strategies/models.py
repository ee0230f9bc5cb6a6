"""Attention layers as models write them: SDPA fed by projections, views of a fused qkv
buffer, rotary embeddings and a KV cache, its output merged back and projected, and
sometimes a second layer stacked on the first (chained attention).

Every draw's first alternative is the plainest form (no projection, no cache, one head),
so a shrunk case keeps only the model forms its failure needs. Long sequences and long
caches, with lengths one off the CPU flash kernel's block sizes, are drawn rarely.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import strategies as st

from fuzz.case import (GQA_FORMS, HEAD_OPS, MAX_DIM, MERGES, PROJECTIONS, CallContext, Case,
                       ModelAttention, Program, TensorSpec)
from strategies.attention import dropout_ps, scales
from strategies.compile_settings import compile_specs, sometimes_frozen
from strategies.geometry import LONG, LONG_QUERIES, rarely
from strategies.masks import mask_specs
from strategies.programs import with_modes
from strategies.tensors import float_dtypes, tensor_specs


def lengths() -> st.SearchStrategy[int]:
    """A query length: short, or rarely long (up to 129)."""
    return rarely(st.integers(1, 6), st.sampled_from(LONG_QUERIES), odds=8)


def cache_lengths() -> st.SearchStrategy[int]:
    """No cache first; a short one; rarely a long one, up to 1,024 past positions."""
    return st.one_of(st.just(0), rarely(st.integers(1, 8), st.sampled_from(LONG), odds=4))


def _plain(shape: tuple[int, ...], dtype: str) -> st.SearchStrategy[TensorSpec]:
    """A weight or an embedding table: normal values, any layout (a transposed weight is
    what `w.T` of a module's parameter gives)."""
    return tensor_specs(shape, dtype, st.just("normal"))


def _weights(shape: tuple[int, ...], dtype: str, grad: bool) -> st.SearchStrategy[TensorSpec]:
    """A projection's weight, trained (`grad`) or not."""
    return _plain(shape, dtype).map(lambda spec: replace(spec, requires_grad=grad))


@st.composite
def model_attention_cases(draw: st.DrawFn, backend: str = "eager", device: str = "cpu",
                          freezing: bool = True) -> Case:
    dtype = draw(float_dtypes(device))
    batch, length = draw(st.integers(1, 2)), draw(lengths())
    heads = draw(st.integers(1, 4))
    projection = draw(st.sampled_from(("none", "fused", "separate")))
    kv_heads = heads if projection == "none" else draw(
        st.sampled_from([h for h in range(heads, 0, -1) if heads % h == 0]))
    rotary = draw(st.booleans())
    head_dim = draw(st.sampled_from((2, 4, 8, 16) if rotary else (2, 4, 8, 16, 3, 5)))
    width = heads * head_dim if projection == "none" else draw(st.integers(1, 16))
    past = draw(cache_lengths().filter(lambda p: p + length <= MAX_DIM)) \
        if projection != "none" else 0
    # Backward half the time, to the weights (a KV cache, a rotary table and a mask stay
    # frozen) and, half of those times, to the input too.
    grad = draw(st.booleans())
    x = draw(tensor_specs((batch, length, width), dtype))
    inputs = [("x", replace(x, requires_grad=grad and draw(st.booleans())))]
    qkv_width = (heads + 2 * kv_heads) * head_dim
    if projection == "fused":
        weights = ("w_qkv",)
        inputs.append(("w_qkv", draw(_weights((qkv_width, width), dtype, grad))))
    elif projection == "separate":
        weights = ("w_q", "w_k", "w_v")
        inputs += [(name, draw(_weights((h * head_dim, width), dtype, grad)))
                   for name, h in zip(weights, (heads, kv_heads, kv_heads))]
    else:
        weights = ()
    split = draw(st.sampled_from(("split", "chunk", "unbind"))) \
        if projection == "fused" and kv_heads == heads else "split"
    if rotary:
        inputs += [(n, draw(_plain((length, head_dim), dtype))) for n in ("cos", "sin")]
    if past:
        inputs += [(n, draw(_plain((batch, kv_heads, past, head_dim), dtype)))
                   for n in ("past_k", "past_v")]
    mask = None
    if draw(st.booleans()):
        mask = "mask"
        inputs.append((mask, draw(mask_specs((batch, heads, length, past + length), dtype))))
    out_proj = None
    if draw(st.booleans()):
        out_proj = "w_o"
        inputs.append((out_proj, draw(_weights((width, heads * head_dim), dtype, grad))))
    layer = ModelAttention(
        "out", "x", heads, kv_heads, head_dim, weights,
        project=draw(st.sampled_from(PROJECTIONS)), split=split,
        head_op=draw(st.sampled_from(HEAD_OPS)),
        rotary=("cos", "sin") if rotary else (), cache=("past_k", "past_v") if past else (),
        gqa="none" if kv_heads == heads else draw(st.sampled_from(GQA_FORMS[1:])),
        mask=mask, is_causal=mask is None and draw(st.booleans()), dropout_p=draw(dropout_ps()),
        scale=draw(scales()), merge=draw(st.sampled_from(MERGES)), out_proj=out_proj)
    # With an output projection, the layer's output is shaped as its input: a second layer
    # may attend over it (stacked layers, here sharing the first's weights), and the model
    # returns the last layer's output, or every layer's.
    body, returns = (layer,), ("out",)
    # Not in 16-bit dtypes: the first layer's error, amplified by the second's scores, has
    # no bound yet (a bfloat16 stack of conditioning 191 was 3.6 times eager's error).
    if out_proj is not None and dtype in ("float32", "float64") and \
            draw(st.integers(0, 3)) == 3:
        body += (ModelAttention(**{**vars(layer), "out": "out2", "x": "out"}),)
        returns = draw(st.sampled_from((("out2",), ("out", "out2"))))
    # A model calls its layer again on new values: the compiled program must serve them.
    # Under any grad mode or autocast, which may change between the calls.
    calls = (draw(with_modes(CallContext())),) + tuple(
        draw(with_modes(CallContext(reseed=s))) for s in draw(st.lists(st.integers(1, 3),
                                                                       max_size=1)))
    return draw(sometimes_frozen(Case(inputs=tuple(inputs), program=Program(body, returns),
                                      compile=draw(compile_specs(backend)), device=device,
                                      calls=calls, backward=any(
                                          getattr(spec, "requires_grad", False)
                                          for _, spec in inputs)), freezing))

