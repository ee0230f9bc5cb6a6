"""Whole cases: geometry, inputs, one SDPA call, compile settings; valid or deliberately not.

Invalid combinations exercise error parity: eager and compiled must both raise, with the
same exception type. They are drawn last among the options so that shrinking leaves them
out unless the failure needs one.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import strategies as st

from fuzz.case import (FLOAT_DTYPES, INT_MASK_DTYPES, VALUE_KINDS, Attention, CallContext, Case,
                       ParamsInput, Program)
from strategies.attention import dropout_ps, scales
from strategies.compile_settings import compile_specs, sometimes_frozen
from strategies.geometry import geometries, zero_sized
from strategies.masks import mask_specs
from strategies.programs import (Operands, call_sequences, kernel_contexts, programs,
                                 with_modes)
from strategies.swarm import Swarm, swarms
from strategies.tensors import float_dtypes, tensor_specs

INVALID = (None, "mask-and-causal", "head-dim-mismatch", "value-length-mismatch",
           "heads-not-dividing", "batch-mismatch", "mixed-dtypes", "mask-dtype-mismatch",
           "mask-shape-mismatch", "dropout-out-of-range", "nonfinite-scale", "rank1-mask",
           "integer-mask", "mask-rank-over")
MASK_INVALID = ("mask-and-causal", "mask-dtype-mismatch", "mask-shape-mismatch", "rank1-mask",
                "integer-mask", "mask-rank-over")


def _grow(shape: tuple[int, ...], dim: int) -> tuple[int, ...]:
    out = list(shape)
    out[dim] += 1
    return tuple(out)


@st.composite
def attention_cases(draw: st.DrawFn, backend: str = "eager", device: str = "cpu",
                    dtypes: st.SearchStrategy[str] | None = None, valid_only: bool = False,
                    form: str = "call", backward: st.SearchStrategy[bool] = st.booleans(),
                    grows: st.SearchStrategy[list[int]] = st.lists(st.integers(1, 3), max_size=2),
                    modes: bool = True,
                    lengths: st.SearchStrategy[int] | None = None, long: bool = False,
                    zero_size: st.SearchStrategy[bool] = st.integers(0, 9).map(lambda i: i == 9),
                    freezing: bool = True,
                    swarm: st.SearchStrategy[Swarm] = swarms()) -> Case:
    """A case over q, k, v and maybe a mask: a single SDPA call (`form="call"`), a whole
    program around SDPA, maybe with an SDPAParams input and several calls from outer
    contexts (`"program"`), or either (`"any"`). A single call may also run backward
    (q, k, v, and a float mask sometimes, then require grad), and be called again with
    longer sequences. On CUDA a single call is often made inside an `sdpa_kernel` context
    that picks the kernel. `modes` False: a single call with no grad mode or autocast
    around it (for tests of faults that modes do not trigger). `lengths`: the sequence
    lengths' strategy, for tests of faults that only long sequences show; `long`: rarely
    up to 1,024 keys (`strategies.geometry.seq_lens`). `freezing`
    False: never under Inductor's freezing (`sometimes_frozen`). `swarm`: which edges
    the case may take (`strategies.swarm`), drawn first."""
    allowed = draw(swarm)
    # Half the cases are shaped for the fused kernels: drawn freely, few are (21 of 300
    # plain calls ran CPU flash, which takes 4-D inputs of one head dim, with the last
    # dim's stride 1, and no dropout; 2 of 59 programs of a 30-minute Inductor run).
    fused = draw(st.booleans())
    cuda_fused = fused and device == "cuda"
    g = draw(geometries(device, fused, lengths, units=allowed.allows("unit-sizes"), long=long))
    if not cuda_fused and allowed.allows("zero-size") and draw(zero_size):
        g = draw(zero_sized(g))
    dtype = draw(float_dtypes(device) if dtypes is None else dtypes)
    invalid = None
    if not valid_only and allowed.allows("invalid") and draw(st.integers(0, 9)) == 0:
        invalid = draw(st.sampled_from(INVALID))
    q_shape, k_shape, v_shape = g.q_shape, g.k_shape, g.v_shape
    k_dtype = dtype
    if invalid == "head-dim-mismatch":
        k_shape = _grow(k_shape, -1)
    elif invalid == "value-length-mismatch":
        v_shape = _grow(v_shape, -2)
    elif invalid == "heads-not-dividing":
        q_shape = _grow(q_shape, -3)
    elif invalid == "batch-mismatch":
        k_shape = (2,) + k_shape if not g.batch else _grow(k_shape, 0)
    elif invalid == "mixed-dtypes":
        k_dtype = draw(st.sampled_from([d for d in FLOAT_DTYPES if d != dtype]))
    odd = allowed.allows("values")
    values = st.sampled_from(VALUE_KINDS if odd else VALUE_KINDS[:1])
    inputs = [(name, draw(tensor_specs(shape, t, values, dense=cuda_fused, equal_rows=odd,
                                       unit_stride=fused)))
              for name, shape, t in (("q", q_shape, dtype), ("k", k_shape, k_dtype),
                                     ("v", v_shape, dtype))]
    use_mask = draw(st.booleans()) or invalid in MASK_INVALID
    if use_mask:
        mask_dtype = dtype
        if invalid == "mask-dtype-mismatch":
            mask_dtype = draw(st.sampled_from([d for d in FLOAT_DTYPES if d != dtype]))
        mask_edges = allowed.allows("mask-edges")
        mask = draw(mask_specs(g.scores_shape, mask_dtype, mask_edges))
        if invalid == "mask-dtype-mismatch" and mask.dtype == "bool":
            mask = draw(mask_specs(g.scores_shape, mask_dtype, mask_edges).filter(
                lambda m: m.dtype != "bool"))
        if invalid == "mask-shape-mismatch":
            mask = mask.__class__(**{**mask.__dict__, "shape": _grow(mask.shape, -1),
                                     "perm": mask.perm})
        elif invalid == "rank1-mask":
            mask = draw(tensor_specs(g.scores_shape[-1:], mask.dtype, st.just("random"),
                                     dense=True))
        elif invalid == "integer-mask":
            mask = draw(tensor_specs(mask.shape, draw(st.sampled_from(INT_MASK_DTYPES)),
                                     st.just("random")))
        elif invalid == "mask-rank-over":
            mask = draw(tensor_specs((2,) + g.scores_shape, mask.dtype, st.just("random")))
        inputs.append(("mask", mask))
    is_causal = invalid == "mask-and-causal" or (not use_mask and draw(st.booleans()))
    mask = "mask" if use_mask else None
    grad = False
    program_form = form == "program" or (form == "any" and draw(st.booleans()))
    if program_form:
        # Chained only in 32 and 64 bits: a 16-bit chain's propagated error has no bound.
        ops = Operands(mask=mask, is_causal=is_causal, enable_gqa=g.enable_gqa,
                       chain=q_shape[-1] == v_shape[-1] and dtype in ("float32", "float64"),
                       scale_extremes=allowed.allows("scale-extremes"))
        params = []
        if draw(st.booleans()):
            inputs.append(("params", ParamsInput(mask=draw(st.sampled_from((None, mask))),
                                                 dropout=draw(st.sampled_from((0.0, 0.1))),
                                                 is_causal=draw(st.booleans()),
                                                 enable_gqa=draw(st.booleans()))))
            params.append("params")
        program = draw(programs([n for n, _ in inputs if n != "params"], params, ops))
        calls = draw(call_sequences(modes and allowed.allows("modes"), allowed.allows("calls")))
    else:
        dropout_p = draw(st.sampled_from((-0.1, 1.0, 1.5))) \
            if invalid == "dropout-out-of-range" else \
            0.0 if fused and device == "cpu" else draw(dropout_ps())  # CPU flash: none
        scale = draw(st.sampled_from((float("nan"), float("inf"), float("-inf")))) \
            if invalid == "nonfinite-scale" else draw(scales(allowed.allows("scale-extremes")))
        call = Attention(out="out", mask=mask, dropout_p=dropout_p, is_causal=is_causal,
                         scale=scale, enable_gqa=g.enable_gqa)
        program = Program(body=(call,), returns=("out",))
        first = draw(kernel_contexts()) if device == "cuda" else CallContext()
        # Later calls with longer sequences: automatic dynamic shapes, and recompiles. The
        # dynamic-shape rules were measured with no grad mode or autocast around the
        # calls, so only calls of one size get those (docs/oracle.md, "Global modes").
        grown = draw(grows) if allowed.allows("calls") else []
        first = draw(with_modes(first)) if modes and allowed.allows("modes") and not grown \
            else first
        calls = (first,) + tuple(replace(first, grow=g) for g in grown)
        # CPU flash accepts a value longer than the key and corrupts the heap in float64
        # backward (docs/findings.md, eager-only): an abort that is eager's, not compiled's.
        grad = invalid != "value-length-mismatch" and draw(backward)
        if grad:
            inputs = [(n, replace(spec, requires_grad=n in "qkv" or (
                spec.dtype in FLOAT_DTYPES and draw(st.booleans())))) for n, spec in inputs]
    has_params = any(isinstance(spec, ParamsInput) for _, spec in inputs)
    return draw(sometimes_frozen(Case(
        inputs=tuple(inputs), program=program,
        compile=draw(compile_specs(backend, allow_dynamic=not has_params,
                                   allow_marks=not program_form)),
        device=device, calls=calls, backward=grad), freezing))


def cases(backend: str = "eager", device: str = "cpu") -> st.SearchStrategy[Case]:
    """Every kind of case: one SDPA call, or a program around SDPA called from contexts."""
    return attention_cases(backend, device, form="any", long=True)


def plain_cases(backend: str = "eager", device: str = "cpu") -> st.SearchStrategy[Case]:
    """One SDPA call of short sequences that takes none of the swarm's departures but
    sizes of 1, one time in two (a decode step's single query is as plain a call as any):
    what a search draws first (`fuzz.generation`), so that breadth does not cost the bugs
    a plain call shows. The flag shrinks to no sizes of 1, so Hypothesis's first case of
    a search, its simplest, is not the 1x1x1x1 call that every numeric fault passes (a
    softmax over one key is 1)."""
    return attention_cases(backend, device, form="call", swarm=st.sampled_from(
        (Swarm(frozenset()), Swarm(frozenset({"unit-sizes"})))))


def program_cases(backend: str = "eager", device: str = "cpu", freezing: bool = True
                  ) -> st.SearchStrategy[Case]:
    """Only programs: the Dynamo-level search space."""
    return attention_cases(backend, device, form="program", long=True, freezing=freezing)
