"""Attention geometry: batch dims, heads, sequence lengths and head dims.

Every size shrinks towards 1 and every flag towards off, so a shrunk case keeps only the
geometry that its failure needs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hypothesis import strategies as st

HEAD_DIMS = (31, 33, 63, 64, 65, 96, 127, 128, 129, 255, 256)
# Head dims every fused CUDA kernel takes (multiples of 8 up to 256): without them, flash,
# efficient and cuDNN would rarely be eligible and CUDA runs would test math alone.
FUSED_HEAD_DIMS = (8, 16, 32, 64, 128, 256)
# One off the CPU flash kernel's query and key block sizes (32 to 512, by length).
LONG = (31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257, 511, 512, 513, 1023, 1024)
LONG_QUERIES = LONG[:9]  # up to 129: a chunk of queries, against keys up to 1,024


@dataclass(frozen=True)
class Geometry:
    batch: tuple[int, ...]
    q_heads: int
    kv_heads: int
    L: int
    S: int
    E: int
    Ev: int
    enable_gqa: bool

    @property
    def q_shape(self) -> tuple[int, ...]:
        return self.batch + (self.q_heads, self.L, self.E)

    @property
    def k_shape(self) -> tuple[int, ...]:
        return self.batch + (self.kv_heads, self.S, self.E)

    @property
    def v_shape(self) -> tuple[int, ...]:
        return self.batch + (self.kv_heads, self.S, self.Ev)

    @property
    def scores_shape(self) -> tuple[int, ...]:
        return self.batch + (self.q_heads, self.L, self.S)


def rarely(common: st.SearchStrategy[int], rare: st.SearchStrategy[int], odds: int = 16
           ) -> st.SearchStrategy[int]:
    """`rare` once in `odds` draws, else `common`, which is what shrinking goes to."""
    return st.integers(0, odds - 1).flatmap(lambda i: rare if i == odds - 1 else common)


def seq_lens(units: bool = True, decode: bool = True, long: bool = False
             ) -> st.SearchStrategy[int]:
    """Small lengths mostly, from 9 to 80 a third of the time (blocked kernels change at
    32/64), and with `decode`, 1 a third of the time: a decoding step's one query. Keys
    are drawn without `decode`, and are 1 one time in 24 where sizes of 1 are allowed: a
    softmax over one key is 1 whatever the scores, so such a call hides every fault in the
    scores, the scale, a mask's values and causal masking (18% of plain calls had one key,
    8.7% of the plain random search's). `units` False: never 1. `long`: one time in 16, a
    length one off a block size of the CPU flash kernel, whose keys split at 512: up to
    1,024 keys (a long cache, or a long prompt), up to 129 queries (a decode step's
    chunk); rare, since the scores and the float64 reference grow with them."""
    small = st.integers(1, 8) if units else st.integers(2, 8)
    first = st.just(1) if units and decode else st.integers(2, 8)
    short = st.one_of(first, small, st.integers(9, 80))
    if not long:
        return short
    return rarely(short, st.sampled_from(LONG_QUERIES if decode else LONG))


def head_dims(device: str = "cpu", units: bool = True) -> st.SearchStrategy[int]:
    """Small dims, 1 and odd ones included, and the kernel-boundary sizes up to 256; on
    CUDA, half the time a size the fused kernels take. `units` False: never 1."""
    any_dim = st.one_of(st.integers(1 if units else 2, 16), st.sampled_from(HEAD_DIMS))
    return st.one_of(st.sampled_from(FUSED_HEAD_DIMS), any_dim) if device == "cuda" else any_dim


@st.composite
def geometries(draw: st.DrawFn, device: str = "cpu", fused: bool = False,
               lengths: st.SearchStrategy[int] | None = None, units: bool = True,
               long: bool = False) -> Geometry:
    """Any geometry; with `fused`, one the fused kernels take: 4-D, and one head dim for
    both E and Ev; on CUDA, also from FUSED_HEAD_DIMS, with as many key heads as query
    heads (CPU flash takes any head dim, and GQA). `lengths` replaces `seq_lens()` for L
    and S. `units` False: no length or head dim of 1 (`strategies.swarm`). `long`: rarely
    a long sequence (`seq_lens`)."""
    # 4-D (one batch dim) two times in three, as models call it (and as CPU flash and the
    # fused CUDA kernels require); 3-D and 5-D otherwise. Shrinks towards 4-D.
    one_dim = st.lists(st.integers(1, 3), min_size=1, max_size=1)
    batch = tuple(draw(one_dim if fused else st.one_of(
        one_dim, st.lists(st.integers(1, 3), max_size=2))))
    cuda_fused = fused and device == "cuda"
    enable_gqa = draw(st.booleans())
    kv_heads = draw(st.integers(1, 4))
    group = draw(st.integers(1, 3)) if enable_gqa and not cuda_fused else 1
    dims = head_dims(device, units)
    E = draw(st.sampled_from(FUSED_HEAD_DIMS) if cuda_fused else dims)
    Ev = E if fused else draw(st.one_of(st.just(E), dims))
    queries = seq_lens(units, long=long) if lengths is None else lengths
    keys = seq_lens(units, decode=False, long=long) if lengths is None else lengths
    return Geometry(batch=batch, q_heads=kv_heads * group, kv_heads=kv_heads,
                    L=draw(queries), S=draw(keys), E=E, Ev=Ev, enable_gqa=enable_gqa)


def zero_sized(g: Geometry) -> st.SearchStrategy[Geometry]:
    """`g` with one size 0: an empty batch, no heads, no queries, no keys, or an empty
    head dim of the query and key or of the value. SDPA takes each (no keys gives zeros,
    an empty head dim an infinite default scale), and compiled code must do the same."""
    options = [replace(g, L=0), replace(g, S=0), replace(g, E=0), replace(g, Ev=0)]
    if g.batch:
        options.append(replace(g, batch=(0,) + g.batch[1:]))
    if not g.enable_gqa:  # GQA divides the query's heads by the key's
        options.append(replace(g, q_heads=0, kv_heads=0))
    return st.sampled_from(options)
