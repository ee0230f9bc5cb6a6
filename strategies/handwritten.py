"""Hand-written attention programs: the forms Inductor's `fuse_attention` pass rewrites
into SDPA, and every constant and structural choice inside them varied.

A program starts from a family: one of the forms models write (`FAMILIES`, the plain
pattern first), or, one time in four, a free combination of the same choices. Then up
to three details (`DETAILS`) leave their canonical value, including values where a
faithful rewrite is impossible (another softmax dim, a key permuted across heads) and
the pass must leave the code alone. Shrinking heads for the plain family with no
detail changed, so a failure reads as a canonical pattern except for what it needs.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

from hypothesis import strategies as st

from fuzz.case import (FLOAT_DTYPES, INT_MASK_DTYPES, CallContext, Case, HandAttention,
                       Program, TensorSpec)
from strategies.compile_settings import compile_specs, sometimes_frozen
from strategies.geometry import HEAD_DIMS
from strategies.masks import broadcast_shapes
from strategies.tensors import float_dtypes, tensor_specs

CANONICAL_PERM = (0, 2, 1, 3)
SCALES = (1.0, 0.125, 8.0, 3.0, -2.0, 0.0, 1e-3)
FILLS = (float("-inf"), -1e4, -1e9, 0.0, float("inf"))
BSHE = {"layout": "bshe"}
DISTILBERT = {"mask_op": "masked_fill", "mask_cmp": "eq0", "mask_view": True,
              "expand_mask": True}
# name -> the HandAttention fields of the form (the pass's pattern it mirrors)
FAMILIES: dict[str, dict] = {
    "plain": {},                                                        # 1
    "multiply": {"scale_op": "mul"},                                    # 2
    "additive-mask": {"mask_op": "add"},                                # 5
    "hf-permuted": BSHE,                                                # 11
    "bert": {**BSHE, "mask_op": "add"},                                 # 14
    "distilbert": {**BSHE, **DISTILBERT},                               # 15
    "query-first": {**BSHE, **DISTILBERT, "scale_op": "query_div"},     # 20
    "gpt2": {**BSHE, "key_t": "permute", "scale_type": "full", "mask_op": "where",
             "fill_type": "finfo_min", "returns_kv": True},             # 18
    "gpt2-unpermuted": {"key_t": "permute", "scale_type": "full", "mask_op": "add",
                        "cast_back": "type_as_value", "upcast": "float"},  # 19
    "t5": {**BSHE, "scale_op": "none", "mask_op": "add", "upcast": "float",
           "cast_back": "type_as_value"},                               # 21
    "bmm": {"layout": "flat", "matmul": "bmm", "scale_op": "none"},     # 13
    "bmm-mask": {"layout": "flat", "matmul": "bmm", "scale_op": "none",
                 "mask_op": "add"},                                     # none (24 is 4-D)
    "upcast-half": {**BSHE, "upcast": "float", "cast_back": "float16"},  # 7
    "causal": {"causal": "tril"},                                       # none: built inside
    "mbart": {"layout": "mbart", "matmul": "bmm", "scale_op": "none",
              "mask_op": "add"},                                        # 24
    "gpt2-buffer": {**BSHE, "key_t": "permute", "scale_type": "full", "causal": "buffer",
                    "fill_type": "finfo_min", "returns_kv": True},      # none: a sliced buffer
    "sliding-window": {"causal": "band"},                               # none
    "einsum": {"matmul": "einsum"},                                     # none
    "baddbmm": {"layout": "flat", "matmul": "baddbmm", "scale_op": "mul"},  # none
    "learned-scale": {"scale_type": "parameter"},                       # 1, if a constant
}
DETAILS = ("perm", "key_t", "scale_value", "scale_type", "order", "mask_cmp", "mask_dtype",
           "fill", "fill_type", "causal_diagonal", "window", "softmax_fn", "softmax_dim", "cast_back",
           "transpose_out", "kv_heads", "matmul", "input_layout")


def _sizes(large: tuple[int, ...] = (17, 32, 33, 64, 80)) -> st.SearchStrategy[int]:
    """Small sizes from 2 first: Inductor turns a matmul over a size-1 dim into pointwise
    ops before the pass could see it, so 1 is drawn, but rarely and not as the minimum."""
    return st.one_of(st.integers(2, 16), st.sampled_from(large + (1,)))


def _stored(logical: tuple[int, ...], perm: tuple[int, ...]) -> tuple[int, ...]:
    """The input shape that `x.permute(perm)` turns into `logical`."""
    return tuple(logical[perm.index(i)] for i in range(len(logical))) if perm else logical


def _choose(changed: frozenset, detail: str, canonical, others) -> st.SearchStrategy:
    """The canonical choice, unless `detail` is one the case changes."""
    if detail not in changed:
        return st.just(canonical)
    return st.sampled_from(tuple(o for o in others if o != canonical) or (canonical,))


@st.composite
def _qkv_specs(draw: st.DrawFn, changed: frozenset, shape: tuple[int, ...], dtype: str,
               grad: bool) -> TensorSpec:
    """Contiguous, unless the case changes the input layout (an expanded input, for one,
    keeps the pass from matching)."""
    spec = draw(tensor_specs(shape, dtype))
    if "input_layout" not in changed:
        spec = TensorSpec(shape, dtype, spec.values, seed=spec.seed)
    return replace(spec, requires_grad=grad)


def _matmuls(layout: str) -> tuple[str, ...]:
    """The matmul forms that take the layout's operands: bmm and baddbmm only 3-D ones."""
    return ("@", "matmul", "einsum") + (("bmm", "baddbmm") if layout in ("flat", "mbart")
                                        else ())


@st.composite
def free_family(draw: st.DrawFn) -> dict:
    """A combination of the families' choices that no model need write."""
    layout = draw(st.sampled_from(("bhse", "bshe", "flat", "mbart")))
    return {"layout": layout,
            "matmul": draw(st.sampled_from(_matmuls(layout))),
            "key_t": draw(st.sampled_from(("transpose", "permute"))),
            "scale_op": draw(st.sampled_from(("div", "mul", "query_div", "query_mul", "none"))),
            "mask_op": draw(st.sampled_from(("none", "add", "where", "masked_fill"))),
            "causal": draw(st.sampled_from(("none", "tril", "triu", "band", "buffer"))),
            "upcast": draw(st.sampled_from(("none", "float", "dtype_kwarg"))),
            "returns_kv": draw(st.booleans())}


@st.composite
def _mask(draw: st.DrawFn, changed: frozenset, family: dict, dtype: str,
          scores: tuple[int, ...]) -> dict:
    """The mask input and how the source applies it: added, or through where/masked_fill
    after a comparison; of a broadcast shape, or a (B, S) padding mask viewed as
    (B, 1, 1, S) and expanded, as DistilBert writes it."""
    op = family["mask_op"]
    view = family.get("mask_view", False) and len(scores) == 4
    if op == "add":
        mask_dtype = draw(_choose(changed, "mask_dtype", dtype,
                                  ("float32", "bool", "int64", "float16")))
    else:
        canonical_dtype = "int64" if view else "bool"
        mask_dtype = draw(_choose(changed, "mask_dtype", canonical_dtype,
                                  ("bool",) + INT_MASK_DTYPES + (dtype,)))
    cmp = "none"
    if op != "add":
        canonical = family.get("mask_cmp") or {"where": "none", "masked_fill": "not"}[op]
        if mask_dtype != "bool" and canonical in ("none", "not"):
            canonical = "eq0" if op == "masked_fill" else "ne0"
        cmp = draw(_choose(changed, "mask_cmp", canonical,
                           ("none", "not", "eq0", "ne0", "gt0", "lt1")))
    shape = (scores[0], scores[-1]) if view else draw(broadcast_shapes(scores))
    kinds = ("random", "full_rows") if mask_dtype not in FLOAT_DTYPES else (
        ("additive", "random", "full_rows") if op == "add" else ("random", "full_rows"))
    spec = draw(tensor_specs(shape, mask_dtype, st.sampled_from(kinds)))
    return {"spec": spec, "mask_op": op, "mask_cmp": cmp, "mask_view": view,
            "expand_mask": view}


@st.composite
def hand_attention_cases(draw: st.DrawFn, backend: str = "inductor", device: str = "cpu",
                         freezing: bool = True) -> Case:
    """One hand-written attention over q, k, v (and maybe a mask), compiled once
    (`freezing` False: never under Inductor's freezing)."""
    name = draw(st.sampled_from(tuple(FAMILIES)))
    family = draw(free_family()) if draw(st.integers(0, 3)) == 3 else FAMILIES[name]
    changed = frozenset(draw(st.sets(st.sampled_from(DETAILS), max_size=3)))
    layout = family.get("layout", "bhse")
    rank = 3 if layout in ("flat", "mbart") else 4  # of the scores
    B, H = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    L, S, E = draw(_sizes()), draw(_sizes()), draw(_sizes(HEAD_DIMS))
    if family.get("causal") == "buffer":  # GPT-2's slice needs as many keys as queries
        S = max(S, L)
    Ev = draw(st.one_of(st.just(E), _sizes(HEAD_DIMS)))
    Hk = 1 if rank == 4 and "kv_heads" in changed else H  # 1: broadcast over heads
    dtype = draw(float_dtypes(device))
    perm = draw(_choose(changed, "perm", CANONICAL_PERM, tuple(
        itertools.permutations(range(4))))) if layout == "bshe" else ()
    if layout == "flat":
        shapes = {"q": (B * H, L, E), "k": (B * H, S, E), "v": (B * H, S, Ev)}
    else:
        shapes = {"q": _stored((B, H, L, E), perm), "k": _stored((B, Hk, S, E), perm),
                  "v": _stored((B, Hk, S, Ev), perm)}
    # Backward one time in four: it compiles a training graph, slower, which only the
    # training variants of the patterns match.
    grad = draw(st.sampled_from((False, False, False, True)))
    inputs = [(n, draw(_qkv_specs(changed, shapes[n], dtype, grad))) for n in ("q", "k", "v")]
    fields: dict = {}
    if family.get("mask_op", "none") != "none":
        mask = draw(_mask(changed, family, dtype, (B, H, L, S)))
        inputs.append(("mask", mask.pop("spec")))
        fields.update(mask, mask="mask")
    matmul = family.get("matmul", "@")
    fields["matmul"] = draw(_choose(changed, "matmul", matmul, _matmuls(layout)))
    key_t = family.get("key_t", "transpose")
    fields["key_t"] = draw(_choose(changed, "key_t", key_t, ("transpose_rev", "mT", "permute")))
    if fields["key_t"] == "permute":
        swap = tuple(range(rank - 2)) + (rank - 1, rank - 2)
        fields["key_perm"] = draw(_choose(changed, "key_t" if key_t == "permute" else "",
                                          swap, tuple(itertools.permutations(range(rank)))))
    fields["scale_op"] = family.get("scale_op", "div")
    if fields["scale_op"] != "none":
        fields["scale"] = draw(_choose(changed, "scale_value", None, SCALES))
        types = ("python", "size", "full", "tensor", "tensor_float64", "parameter")
        fields["scale_type"] = draw(_choose(
            changed, "scale_type", family.get("scale_type", "python"),
            types if fields["scale"] is None else types[:1] + types[2:]))
    fields["causal"] = family.get("causal", "none")
    if fields["causal"] not in ("none", "buffer"):
        fields["causal_diagonal"] = draw(_choose(changed, "causal_diagonal", 0,
                                                 (-2, -1, 1, 2)))
    if fields["causal"] == "band":
        fields["window"] = draw(_choose(changed, "window", 4, (1, 2, 3, 16, 33)))
    if "mask" in fields or fields["causal"] != "none":
        fields["fill"] = draw(_choose(changed, "fill", float("-inf"), FILLS))
        fields["fill_type"] = draw(_choose(changed, "fill_type",
                                           family.get("fill_type", "python"),
                                           ("python", "finfo_min", "tensor", "tensor_float32")))
    fields["upcast"] = family.get("upcast", "none")
    cast = family.get("cast_back", "none" if fields["upcast"] == "none" else "query")
    fields["cast_back"] = draw(_choose(changed, "cast_back", cast, (
        "none", "query", "type_as_value", "float16", "bfloat16")))
    # Dropout with p > 0 in training draws at random, so it leaves values unchecked.
    fields["dropout"] = draw(st.sampled_from(("none",) * 3 + ("eval", "zero", "train")))
    if fields["dropout"] in ("eval", "train"):
        fields["dropout_p"] = draw(st.sampled_from((0.1, 0.5)))
    stmt = HandAttention(
        out="out", layout=layout, perm=perm, heads=H if layout == "flat" else 1,
        order=draw(_choose(changed, "order", "scale_first", ("mask_first",))),
        softmax_fn=draw(_choose(changed, "softmax_fn", "method", ("torch", "functional"))),
        softmax_dim=draw(_choose(changed, "softmax_dim", -1, (rank - 1, -2, 0, 1))),
        transpose_out=draw(_choose(changed, "transpose_out", False, (True,))),
        **fields)
    returns = ("out", "k", "v") if family.get("returns_kv") else ("out",)
    return draw(sometimes_frozen(Case(
        inputs=tuple(inputs), program=Program((stmt,), returns),
        compile=draw(compile_specs(backend)), device=device, calls=(CallContext(),),
        backward=grad), freezing))
