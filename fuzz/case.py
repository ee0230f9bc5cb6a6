"""The Case: one fuzzed attention program as pure, versioned data.

A Case holds no tensors and no callables, only specs that `codegen` turns into source and
that the executor materialises identically in every process. Validation lives here so that
a Case that exists is a Case that can run.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

SCHEMA_VERSION = 10  # 2: CallContext.reseed; 3: HandAttention, integer masks, backward;
# 4: CompileSpec.mark_dynamic; 5: ModelAttention; 6: ModuleInput, ModuleCall;
# 7: the decoder_layer module; 8: hand-written mbart layout, einsum and baddbmm, band and
# buffer causal masks (HandAttention.window), parameter scales; 9: zero-size dims;
# 10: CompileSpec.freezing

FLOAT_DTYPES = ("float32", "float64", "bfloat16", "float16")
INT_MASK_DTYPES = ("int64", "int32", "uint8")
MASK_DTYPES = FLOAT_DTYPES + ("bool",) + INT_MASK_DTYPES
VALUE_KINDS = ("normal", "tiny", "large", "repeated")
MASK_VALUE_KINDS = ("random", "full_rows", "additive", "padding")
LAYOUTS = ("contiguous", "transposed", "permuted", "offset", "strided", "expanded")
STORAGE_OFFSET = 3  # of an "offset" input: where `materialize.build_tensor` starts it
DEVICES = ("cpu", "cuda")
MAX_DIM = 1024
MAX_NUMEL = 1 << 22


class CaseError(ValueError):
    """A case (or a file claiming to hold one) that cannot be run; the message says why."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise CaseError(message)


@dataclass(frozen=True)
class TensorSpec:
    """How to build one input tensor: logical shape, dtype, values, then a memory layout.

    `perm` is the storage order for the `permuted` layout; `expand_dim` the dim that has
    stride 0 for `expanded`. Values are drawn from a CPU generator seeded with `seed`, so
    the same spec gives bit-identical tensors everywhere.
    """

    shape: tuple[int, ...]
    dtype: str = "float32"
    values: str = "normal"
    layout: str = "contiguous"
    perm: tuple[int, ...] = ()
    expand_dim: int = 0
    seed: int = 0
    requires_grad: bool = False

    @property
    def is_mask(self) -> bool:
        return self.values in MASK_VALUE_KINDS

    def validate(self, name: str) -> None:
        where = f"input {name!r}"
        _require(1 <= len(self.shape) <= 6, f"{where}: rank {len(self.shape)} is not in 1..6")
        _require(all(isinstance(d, int) and 0 <= d <= MAX_DIM for d in self.shape),
                 f"{where}: every dim must be an int in 0..{MAX_DIM}, got {self.shape}")
        numel = 1
        for d in self.shape:
            numel *= d
        _require(numel <= MAX_NUMEL, f"{where}: {numel} elements is over {MAX_NUMEL}")
        kinds = MASK_VALUE_KINDS if self.is_mask else VALUE_KINDS
        _require(self.values in kinds, f"{where}: values {self.values!r} not in {kinds}")
        dtypes = MASK_DTYPES if self.is_mask else FLOAT_DTYPES
        _require(self.dtype in dtypes, f"{where}: dtype {self.dtype!r} not in {dtypes}")
        _require(not (self.dtype in ("bool",) + INT_MASK_DTYPES and self.values == "additive"),
                 f"{where}: a {self.dtype} mask holds 0/1 keep flags; it cannot be additive")
        _require(self.values != "padding" or self.dtype not in INT_MASK_DTYPES,
                 f"{where}: a padding mask is bool (True: padding) or float (-inf: padding)")
        _require(self.layout in LAYOUTS, f"{where}: layout {self.layout!r} not in {LAYOUTS}")
        _require(len(self.shape) >= 2 or self.values not in ("repeated", "full_rows"),
                 f"{where}: {self.values!r} values need two dims")
        if self.layout == "permuted":
            _require(sorted(self.perm) == list(range(len(self.shape))),
                     f"{where}: perm {self.perm} is not a permutation of the dims")
        else:
            _require(self.perm == (), f"{where}: perm is only for the permuted layout")
        if self.layout == "expanded":
            _require(0 <= self.expand_dim < len(self.shape) - 1,
                     f"{where}: expand_dim {self.expand_dim} must name a dim before the last")
        else:
            _require(self.expand_dim == 0, f"{where}: expand_dim is only for the expanded layout")
        _require(self.layout != "transposed" or len(self.shape) >= 2,
                 f"{where}: a transposed layout needs two dims")
        _require(0 <= self.seed < 2**63, f"{where}: seed must be in 0..2**63-1")
        _require(not (self.requires_grad and self.dtype not in FLOAT_DTYPES),
                 f"{where}: a {self.dtype} tensor cannot require grad")


BACKENDS = ("MATH", "FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "OVERRIDEABLE")
FLAGS = ("flash", "mem_efficient", "math", "cudnn")
MUTATIONS = ("add_", "mul_", "copy_", "iadd", "setitem")
BREAK_PLACES = ("top", "helper", "helper2", "loop")
PARAM_ATTRS = ("query", "key", "value", "attn_mask", "dropout", "is_causal", "enable_gqa")
KERNEL_STYLES = ("with", "decorator")


class Scope:
    """What each name holds while a program is checked: 'tensor', 'params', 'module' or
    'value'."""

    def __init__(self, kinds: dict[str, str]) -> None:
        self.kinds = dict(kinds)

    def need(self, name: str | None, kind: str, user: str) -> None:
        if name is None:
            return
        _require(name in self.kinds, f"{user} reads {name!r}, which is not defined before it")
        _require(self.kinds[name] == kind, f"{user} needs {name!r} to be a {kind}, "
                 f"but it is a {self.kinds[name]}")

    def define(self, name: str, kind: str) -> None:
        _require(name.isidentifier(), f"{name!r} is not an identifier")
        _require(name not in self.kinds, f"{name!r} is assigned twice")
        self.kinds[name] = kind


@dataclass(frozen=True)
class Attention:
    """`out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, ...)`."""

    out: str
    query: str = "q"
    key: str = "k"
    value: str = "v"
    mask: str | None = None
    dropout_p: float = 0.0
    is_causal: bool = False
    scale: float | None = None
    enable_gqa: bool = False

    def check(self, scope: Scope) -> None:
        for ref in (self.query, self.key, self.value, self.mask):
            scope.need(ref, "tensor", "attention")
        # Outside [0, 1) is an invalid argument, drawn on purpose: eager and compiled must
        # refuse it alike.
        _require(-1.0 <= self.dropout_p <= 2.0, f"dropout_p {self.dropout_p} not in [-1, 2]")
        scope.define(self.out, "tensor")


@dataclass(frozen=True)
class Mutate:
    """An in-place change of a tensor: `t.add_(v)`, `t.mul_(v)`, `t.copy_(t * v)`,
    `t += v`, or `t[..., 0] = v`."""

    target: str
    method: str = "add_"
    value: float = 1.0

    def check(self, scope: Scope) -> None:
        scope.need(self.target, "tensor", "a mutation")
        _require(self.method in MUTATIONS, f"mutation {self.method!r} not in {MUTATIONS}")


@dataclass(frozen=True)
class BuildParams:
    """`out = SDPAParams(query, key, value, mask, dropout, is_causal, enable_gqa)`, with
    SDPAParams allowed in the graph as PyTorch's own test does."""

    out: str
    query: str = "q"
    key: str = "k"
    value: str = "v"
    mask: str | None = None
    dropout: float = 0.0
    is_causal: bool = False
    enable_gqa: bool = False

    def check(self, scope: Scope) -> None:
        for ref in (self.query, self.key, self.value, self.mask):
            scope.need(ref, "tensor", "SDPAParams")
        scope.define(self.out, "params")


@dataclass(frozen=True)
class ParamsAttr:
    """`out = params.attr`."""

    out: str
    params: str
    attr: str = "query"

    def check(self, scope: Scope) -> None:
        scope.need(self.params, "params", "an attribute read")
        _require(self.attr in PARAM_ATTRS, f"attribute {self.attr!r} not in {PARAM_ATTRS}")
        scope.define(self.out, "tensor" if self.attr in ("query", "key", "value")
                     else "value")


@dataclass(frozen=True)
class Shift:
    """`out = source + value`: a plain graph op on a tensor."""

    out: str
    source: str
    value: float = 1.0

    def check(self, scope: Scope) -> None:
        scope.need(self.source, "tensor", "an addition")
        scope.define(self.out, "tensor")


@dataclass(frozen=True)
class GraphBreak:
    """`torch._dynamo.graph_break()` at top level, in a helper one or two calls deep, or in
    a `for` loop."""

    place: str = "top"

    def check(self, scope: Scope) -> None:
        _require(self.place in BREAK_PLACES, f"graph break place {self.place!r} not in "
                 f"{BREAK_PLACES}")


@dataclass(frozen=True)
class ReadBackends:
    """`out = _cur_sdpa_kernel_backends(with_priority=...)`: the enabled set, as seen inside."""

    out: str
    with_priority: bool = False

    def check(self, scope: Scope) -> None:
        scope.define(self.out, "value")


@dataclass(frozen=True)
class ReadFlag:
    """`out = torch.backends.cuda.<flag>_sdp_enabled()`."""

    out: str
    flag: str = "math"

    def check(self, scope: Scope) -> None:
        _require(self.flag in FLAGS, f"flag {self.flag!r} not in {FLAGS}")
        scope.define(self.out, "value")


@dataclass(frozen=True)
class SetFlag:
    """`torch.backends.cuda.enable_<flag>_sdp(enabled)`."""

    flag: str = "math"
    enabled: bool = True

    def check(self, scope: Scope) -> None:
        _require(self.flag in FLAGS, f"flag {self.flag!r} not in {FLAGS}")


@dataclass(frozen=True)
class KernelBlock:
    """`with sdpa_kernel([...], set_priority=...):` around `body`, or the same body as a
    helper function decorated with `@sdpa_kernel(...)`."""

    backends: tuple[str, ...]
    body: tuple["Statement", ...]
    set_priority: bool = False
    style: str = "with"

    def check(self, scope: Scope) -> None:
        _require(len(self.backends) >= 1, "sdpa_kernel needs at least one backend")
        _require(all(b in BACKENDS for b in self.backends),
                 f"sdpa_kernel backends {self.backends} not all in {BACKENDS}")
        _require(self.style in KERNEL_STYLES, f"style {self.style!r} not in {KERNEL_STYLES}")
        _require(len(self.body) >= 1, "an sdpa_kernel block needs a body")
        for stmt in self.body:
            stmt.check(scope)


HAND_LAYOUTS = ("bhse", "bshe", "flat", "mbart")
MATMULS = ("@", "matmul", "bmm", "einsum", "baddbmm")
BATCHED_MATMULS = ("bmm", "baddbmm")  # 3-D operands only
KEY_TRANSPOSES = ("transpose", "transpose_rev", "mT", "permute")
SCALE_OPS = ("div", "mul", "query_div", "query_mul", "none")
SCALE_TYPES = ("python", "size", "full", "tensor", "tensor_float64", "parameter")
HAND_ORDERS = ("scale_first", "mask_first")
MASK_OPS = ("none", "add", "where", "masked_fill")
MASK_COMPARISONS = ("none", "not", "eq0", "ne0", "gt0", "lt1")
FILL_TYPES = ("python", "finfo_min", "tensor", "tensor_float32")
CAUSAL = ("none", "tril", "triu", "band", "buffer")
SOFTMAX_FNS = ("method", "torch", "functional")
UPCASTS = ("none", "float", "dtype_kwarg")
CAST_BACKS = ("none", "query", "type_as_value", "float16", "bfloat16")
DROPOUTS = ("none", "eval", "zero", "train")
# The fields of hand-written attention that take one of a few values, and those values.
HAND_CHOICES = {"layout": HAND_LAYOUTS, "matmul": MATMULS, "key_t": KEY_TRANSPOSES,
                "scale_op": SCALE_OPS, "scale_type": SCALE_TYPES, "order": HAND_ORDERS,
                "mask_op": MASK_OPS, "mask_cmp": MASK_COMPARISONS, "fill_type": FILL_TYPES,
                "causal": CAUSAL, "softmax_fn": SOFTMAX_FNS, "upcast": UPCASTS,
                "cast_back": CAST_BACKS, "dropout": DROPOUTS}


@dataclass(frozen=True)
class HandAttention:
    """Attention written out by hand (matmul, scale, mask, softmax, dropout, matmul), in
    the forms Inductor's `fuse_attention` pass rewrites into SDPA, and in forms it must not.

    Every field's default is the canonical pattern (`softmax(q @ k.transpose(-2, -1) /
    sqrt(E), -1) @ v`), so a shrunk case reads as the canonical pattern except for the
    fields that differ (`deviations`). `layout`: `bhse` takes (B, H, L, E) inputs, `bshe`
    takes inputs that `perm` turns into that (HuggingFace's (B, S, H, E) with (0, 2, 1, 3)),
    `flat` takes 3-D (B*H, L, E) inputs, and views the scores as (B, `heads`, L, S) to add
    a 4-D mask; `mbart` takes (B, H, L, E) inputs and views them as 3-D (B*H, L, E) itself,
    the scores back to 4-D around the mask, and the output to 4-D (MBart's form, Inductor's
    pattern 24). `scale` None is the canonical value for the op: sqrt(E) to divide by,
    1/sqrt(E) to multiply by; a `parameter` scale is a module-level `nn.Parameter`.
    `causal`: a mask built inside (`tril`, `triu`), a sliding window of `window` keys
    (`band`), or GPT-2's bottom-right causal mask sliced from a module-level buffer
    (`buffer`).
    """

    out: str
    query: str = "q"
    key: str = "k"
    value: str = "v"
    mask: str | None = None
    layout: str = "bhse"
    perm: tuple[int, ...] = ()
    heads: int = 1
    matmul: str = "@"
    key_t: str = "transpose"
    key_perm: tuple[int, ...] = ()
    scale_op: str = "div"
    scale: float | None = None
    scale_type: str = "python"
    order: str = "scale_first"
    mask_op: str = "none"
    mask_cmp: str = "none"
    mask_view: bool = False
    expand_mask: bool = False
    fill: float = float("-inf")
    fill_type: str = "python"
    causal: str = "none"
    causal_diagonal: int = 0
    window: int = 0
    softmax_fn: str = "method"
    softmax_dim: int = -1
    upcast: str = "none"
    cast_back: str = "none"
    dropout: str = "none"
    dropout_p: float = 0.0
    transpose_out: bool = False

    def check(self, scope: Scope) -> None:
        for ref in (self.query, self.key, self.value, self.mask):
            scope.need(ref, "tensor", "hand-written attention")
        for name, allowed in HAND_CHOICES.items():
            _require(getattr(self, name) in allowed,
                     f"hand-written attention: {name} {getattr(self, name)!r} not in {allowed}")
        rank = self.scores_rank
        _require((self.layout == "bshe") == bool(self.perm),
                 "hand-written attention: perm is for the bshe layout, and it needs one")
        _require(not self.perm or sorted(self.perm) == list(range(4)),
                 f"hand-written attention: perm {self.perm} is not a permutation of 4 dims")
        _require((self.key_t == "permute") == bool(self.key_perm),
                 "hand-written attention: key_perm goes with key_t 'permute' only")
        _require(not self.key_perm or sorted(self.key_perm) == list(range(rank)),
                 f"hand-written attention: key_perm {self.key_perm} is not a permutation of "
                 f"{rank} dims")
        _require(self.matmul not in BATCHED_MATMULS or rank == 3,
                 f"hand-written attention: {self.matmul} needs 3-D scores (flat or mbart)")
        _require((self.causal == "band") == (self.window > 0),
                 "hand-written attention: a sliding window needs a width, and only it")
        _require(self.causal != "buffer" or self.causal_diagonal == 0,
                 "hand-written attention: a causal buffer is GPT-2's, diagonal 0")
        _require(1 <= self.heads <= MAX_DIM, f"heads {self.heads} not in 1..{MAX_DIM}")
        _require((self.mask_op == "none") == (self.mask is None),
                 "hand-written attention: a mask needs a mask op, and a mask op a mask")
        _require(self.mask_op in ("where", "masked_fill") or self.mask_cmp == "none",
                 "hand-written attention: a mask comparison is for where and masked_fill")
        _require(not self.mask_view or (self.mask is not None and rank == 4),
                 "hand-written attention: mask_view reshapes a 2-D (B, S) mask to 4-D")
        _require(self.scale_type != "size" or self.scale is None,
                 "hand-written attention: a scale computed from the size is the canonical one")
        _require(self.scale_op != "none" or (self.scale is None and self.scale_type == "python"),
                 "hand-written attention: no scale op, no scale")
        _require(-rank <= self.softmax_dim < rank,
                 f"hand-written attention: softmax dim {self.softmax_dim} out of range")
        _require(0.0 <= self.dropout_p < 1.0, f"dropout_p {self.dropout_p} not in [0, 1)")
        _require((self.dropout in ("eval", "train")) == (self.dropout_p > 0),
                 "hand-written attention: eval and train dropout need a p > 0, the others none")
        scope.define(self.out, "tensor")

    @property
    def scores_rank(self) -> int:
        """3 where the source multiplies 3-D (B*H, L, E) operands, else 4."""
        return 3 if self.layout in ("flat", "mbart") else 4

    @property
    def random(self) -> bool:
        """Whether the dropout draws random numbers, which eager and compiled draw apart."""
        return self.dropout == "train" and self.dropout_p > 0

    def deviations(self) -> tuple[str, ...]:
        """`field=value` for each field that differs from the canonical pattern."""
        canonical = HandAttention(self.out, self.query, self.key, self.value, self.mask)
        skip = {"out", "query", "key", "value", "mask"}
        return tuple(f"{name}={getattr(self, name)!r}" for name in self.__dataclass_fields__
                     if name not in skip and getattr(self, name) != getattr(canonical, name))



PROJECTIONS = ("linear", "matmul")
QKV_SPLITS = ("split", "chunk", "unbind")
HEAD_OPS = ("view", "reshape", "unflatten")
GQA_FORMS = ("none", "enable", "repeat_kv")
MERGES = ("reshape", "contiguous_view", "flatten")
MODEL_CHOICES = {"project": PROJECTIONS, "split": QKV_SPLITS, "head_op": HEAD_OPS,
                 "gqa": GQA_FORMS, "merge": MERGES}


@dataclass(frozen=True)
class ModelAttention:
    """An attention layer as models write it: from a hidden state `x` (B, L, D) through
    projections to heads, maybe rotary embeddings and a KV cache, SDPA, then heads merged
    back to (B, L, H*E) and maybe an output projection.

    `weights`: () feeds the heads of `x` itself to SDPA as query, key and value, the very
    same tensor (self-attention without projections); one name is a fused qkv weight
    (H*E + 2*kv_heads*E, D), cut by `split`; three are separate q, k, v weights. Weights
    are (out, in), applied by `F.linear(x, w)` or `x @ w.T` (`project`). `rotary` names
    (cos, sin), each (L, E), applied to the new query and key; `cache` names (past_k,
    past_v), each (B, kv_heads, P, E), concatenated before the new keys and values. With
    fewer kv_heads than heads, `gqa` says how: SDPA's `enable_gqa`, or Llama's `repeat_kv`.
    Every default is the plainest form, so a shrunk case keeps only what it needs.
    """

    out: str
    x: str = "x"
    heads: int = 1
    kv_heads: int = 1
    head_dim: int = 2
    weights: tuple[str, ...] = ()
    project: str = "linear"
    split: str = "split"
    head_op: str = "view"
    rotary: tuple[str, ...] = ()
    cache: tuple[str, ...] = ()
    gqa: str = "none"
    mask: str | None = None
    is_causal: bool = False
    dropout_p: float = 0.0
    scale: float | None = None
    merge: str = "reshape"
    out_proj: str | None = None

    def check(self, scope: Scope) -> None:
        for ref in (self.x, self.mask, self.out_proj, *self.weights, *self.rotary, *self.cache):
            scope.need(ref, "tensor", "a model's attention")
        for name, allowed in MODEL_CHOICES.items():
            _require(getattr(self, name) in allowed,
                     f"model attention: {name} {getattr(self, name)!r} not in {allowed}")
        _require(len(self.weights) in (0, 1, 3), "model attention: weights are none, one "
                 f"fused qkv weight or three, not {len(self.weights)}")
        _require(len(self.rotary) in (0, 2) and len(self.cache) in (0, 2),
                 "model attention: rotary names (cos, sin), cache names (past_k, past_v)")
        _require(1 <= self.kv_heads <= self.heads <= MAX_DIM and self.heads % self.kv_heads == 0,
                 f"model attention: kv_heads {self.kv_heads} must divide heads {self.heads}")
        _require((self.gqa == "none") == (self.kv_heads == self.heads),
                 "model attention: fewer kv_heads than heads needs a gqa form, and only they")
        _require(self.weights or self.kv_heads == self.heads,
                 "model attention: without projections, keys have the query's heads")
        _require(self.split == "split" or (len(self.weights) == 1 and
                                            self.kv_heads == self.heads),
                 "model attention: chunk and unbind cut a fused weight of equal q, k, v")
        _require(not self.rotary or self.head_dim % 2 == 0,
                 "model attention: rotary embeddings rotate halves of an even head_dim")
        _require(0.0 <= self.dropout_p < 1.0, f"dropout_p {self.dropout_p} not in [0, 1)")
        scope.define(self.out, "tensor")

    def deviations(self) -> tuple[str, ...]:
        """`field=value` for each knob that differs from the plainest form."""
        plain = ModelAttention(self.out, self.x)
        skip = {"out", "x", "heads", "kv_heads", "head_dim"}
        return tuple(f"{name}={getattr(self, name)!r}" for name in self.__dataclass_fields__
                     if name not in skip and getattr(self, name) != getattr(plain, name))


MODULE_KINDS = ("mha", "encoder_layer", "decoder_layer")
ACTIVATIONS = ("relu", "gelu")
# The options of a module that take one of a few values and keep its parameters as they are.
MODULE_CHOICES = {"batch_first": (False, True), "norm_first": (False, True),
                  "training": (False, True), "activation": ACTIVATIONS}


@dataclass(frozen=True)
class ModuleInput:
    """An `nn.MultiheadAttention` (`mha`), `nn.TransformerEncoderLayer` (`encoder_layer`)
    or `nn.TransformerDecoderLayer` (`decoder_layer`) passed to the function, as a model's
    submodule is: built in each run from the tensor
    inputs `params` names (parameter path -> input, in `module_parameters` order), each
    wrapped as the module's own `nn.Parameter`, so that gradients reach the weights and
    the float64 run gets a float64 module. `training`: `train()` or `eval()` (whose fast
    paths a module takes under no_grad). Dropout is 0: the module's draws are not
    seeded per call as SDPA's are."""

    module: str
    embed_dim: int
    heads: int
    params: tuple[tuple[str, str], ...]
    batch_first: bool = False
    bias: bool = True
    add_bias_kv: bool = False
    kdim: int | None = None
    vdim: int | None = None
    norm_first: bool = False
    feedforward: int = 4
    activation: str = "relu"
    training: bool = False

    def validate(self, name: str, tensors: dict[str, TensorSpec]) -> None:
        where = f"input {name!r}"
        _require(self.module in MODULE_KINDS, f"{where}: module {self.module!r} not in "
                 f"{MODULE_KINDS}")
        _require(1 <= self.heads <= self.embed_dim <= MAX_DIM
                 and self.embed_dim % self.heads == 0,
                 f"{where}: heads {self.heads} must divide embed_dim {self.embed_dim}")
        _require(self.activation in ACTIVATIONS, f"{where}: activation not in {ACTIVATIONS}")
        _require(self.module == "mha" or (self.kdim is None and self.vdim is None
                                          and not self.add_bias_kv),
                 f"{where}: kdim, vdim and add_bias_kv are MultiheadAttention's")
        _require(1 <= self.feedforward <= MAX_DIM, f"{where}: feedforward not in 1..{MAX_DIM}")
        wanted = module_parameters(self)
        _require(tuple(path for path, _ in self.params) == tuple(wanted),
                 f"{where}: parameters {[p for p, _ in self.params]} are not the module's "
                 f"{list(wanted)}")
        for path, ref in self.params:
            spec = tensors.get(ref)
            _require(spec is not None, f"{where}: parameter {path} names {ref!r}, which is "
                     "not a tensor input")
            _require(spec.shape == wanted[path] and not spec.is_mask,
                     f"{where}: parameter {path} must be a {wanted[path]} tensor of values")


def module_parameters(m: ModuleInput) -> dict[str, tuple[int, ...]]:
    """The module's parameters as torch registers them (path -> shape), in its order."""
    e = m.embed_dim
    found: dict[str, tuple[int, ...]] = {}
    prefixes = {"mha": ("",), "encoder_layer": ("self_attn.",),
                "decoder_layer": ("self_attn.", "multihead_attn.")}[m.module]
    for prefix in prefixes:
        if (m.kdim or e) == e and (m.vdim or e) == e:
            found[prefix + "in_proj_weight"] = (3 * e, e)
        else:
            found.update({prefix + "q_proj_weight": (e, e),
                          prefix + "k_proj_weight": (e, m.kdim or e),
                          prefix + "v_proj_weight": (e, m.vdim or e)})
        if m.bias:
            found[prefix + "in_proj_bias"] = (3 * e,)
        if m.add_bias_kv:
            found.update({prefix + "bias_k": (1, 1, e), prefix + "bias_v": (1, 1, e)})
        found[prefix + "out_proj.weight"] = (e, e)
        if m.bias:
            found[prefix + "out_proj.bias"] = (e,)
    if m.module != "mha":
        f = m.feedforward
        for name, shape in (("linear1", (f, e)), ("linear2", (e, f))):
            found[name + ".weight"] = shape
            if m.bias:
                found[name + ".bias"] = shape[:1]
        for name in ("norm1", "norm2", "norm3")[:len(prefixes) + 1]:
            found[name + ".weight"] = (e,)
            if m.bias:
                found[name + ".bias"] = (e,)
    return found


@dataclass(frozen=True)
class ModuleCall:
    """`out = module(query, key, value, ...)[0]` for a MultiheadAttention (`out, out_w =`
    where it returns weights, `need_weights`), `out = module(query, src_mask=..., ...)`
    for an encoder layer, which attends to its one input, and `out = module(query, key,
    tgt_mask=..., ...)` for a decoder layer, whose masks and causal hint are its
    self-attention's, and which attends to `key` (the memory, also `value`) unmasked.
    `key_padding_mask` is (B, S), True (or -inf) where a key is padding; `attn_mask` is
    (L, S) or (B * heads, L, S)."""

    out: str
    module: str
    query: str
    key: str | None = None
    value: str | None = None
    key_padding_mask: str | None = None
    attn_mask: str | None = None
    is_causal: bool = False
    need_weights: bool = False
    average_attn_weights: bool = True

    @property
    def weights_out(self) -> str | None:
        return f"{self.out}_w" if self.need_weights else None

    def check(self, scope: Scope) -> None:
        scope.need(self.module, "module", "a module call")
        for ref in (self.query, self.key, self.value, self.key_padding_mask, self.attn_mask):
            scope.need(ref, "tensor", "a module call")
        _require((self.key is None) == (self.value is None),
                 "a module call names both key and value, or neither (self-attention)")
        scope.define(self.out, "tensor")
        if self.weights_out:
            scope.define(self.weights_out, "tensor")


Statement = (Attention | Mutate | BuildParams | ParamsAttr | Shift | GraphBreak | ReadBackends
             | ReadFlag | SetFlag | KernelBlock | HandAttention | ModelAttention | ModuleCall)
STATEMENTS: dict[str, type] = {
    "attention": Attention, "mutate": Mutate, "sdpa_params": BuildParams,
    "params_attr": ParamsAttr, "shift": Shift, "graph_break": GraphBreak,
    "read_backends": ReadBackends, "read_flag": ReadFlag, "set_flag": SetFlag,
    "sdpa_kernel": KernelBlock, "hand_attention": HandAttention,
    "model_attention": ModelAttention, "module_call": ModuleCall,
}


def walk(body: tuple[Statement, ...]):
    """Every statement, nested ones included, in program order."""
    for stmt in body:
        yield stmt
        if isinstance(stmt, KernelBlock):
            yield from walk(stmt.body)


@dataclass(frozen=True)
class ParamsInput:
    """An SDPAParams built outside the function from other inputs and passed in."""

    query: str = "q"
    key: str = "k"
    value: str = "v"
    mask: str | None = None
    dropout: float = 0.0
    is_causal: bool = False
    enable_gqa: bool = False

    def validate(self, name: str, tensors: set[str]) -> None:
        for ref in (self.query, self.key, self.value, self.mask):
            _require(ref is None or ref in tensors,
                     f"input {name!r}: SDPAParams field {ref!r} is not a tensor input")


MAX_CALLS = 8


def reseed(seed: int, salt: int) -> int:
    """An input's seed in seed variant `salt` (salt 0: the seed itself)."""
    return (seed + salt * 0x9E3779B1) % 2**63


GRAD_MODES = ("default", "no_grad", "enable_grad", "inference_mode")
AUTOCASTS = (None, "bfloat16", "float16")


@dataclass(frozen=True)
class CallContext:
    """The contexts a call of the function is made from: `sdpa_kernel` (`backends` None:
    none), a grad mode (`torch.no_grad()`, ...; `default` is none) and CPU or CUDA autocast
    to a 16-bit dtype; and the salt of its input values: a call with `reseed` k gets the
    inputs of the case's seed variant k (same shapes, dtypes and layouts, other values), so
    that a compiled function reused on new values is tested as a program that calls it
    twice would be."""

    backends: tuple[str, ...] | None = None
    set_priority: bool = False
    reseed: int = 0
    grow: int = 0  # added to the sequence lengths L and S of every input (`grow_dims`)
    grad_mode: str = "default"
    autocast: str | None = None

    @property
    def guarded(self) -> tuple:
        """What Dynamo's guards see of the contexts, not the values: the kernel context,
        whether grad is enabled (`enable_grad` around a call is the default state),
        inference mode, and the autocast dtype. Calls with equal keys must share graphs."""
        grad = "default" if self.grad_mode == "enable_grad" else self.grad_mode
        return self.backends, self.set_priority, grad, self.autocast

    def validate(self) -> None:
        _require(self.grad_mode in GRAD_MODES,
                 f"call grad mode {self.grad_mode!r} not in {GRAD_MODES}")
        _require(self.autocast in AUTOCASTS, f"call autocast {self.autocast!r} not in "
                 f"{AUTOCASTS}")
        _require(0 <= self.reseed < 2**16, f"call reseed {self.reseed} not in [0, 65536)")
        _require(0 <= self.grow <= 64, f"call grow {self.grow} not in [0, 64]")
        if self.backends is not None:
            _require(len(self.backends) >= 1 and all(b in BACKENDS for b in self.backends),
                     f"call context backends {self.backends} must be a non-empty subset of "
                     f"{BACKENDS}")


@dataclass(frozen=True)
class Program:
    """The body of the function under test and the names it returns, in order."""

    body: tuple[Statement, ...]
    returns: tuple[str, ...]

    def validate(self, inputs: dict[str, str]) -> None:
        _require(len(self.body) >= 1, "a program needs at least one statement")
        scope = Scope(inputs)
        for stmt in self.body:
            stmt.check(scope)
        _require(len(self.returns) >= 1, "a program must return something")
        for name in self.returns:
            _require(name in scope.kinds, f"the program returns {name!r}, which it never "
                     "defines")

    @property
    def random_statements(self) -> list[Statement]:
        """The statements that draw random numbers (dropout in training)."""
        return [s for s in walk(self.body)
                if (isinstance(s, (Attention, ModelAttention)) and s.dropout_p > 0)
                or (isinstance(s, HandAttention) and s.random)]

    @property
    def sets_backend_state(self) -> bool:
        """Whether the program changes the global SDPA backend state as it runs."""
        return any(isinstance(s, (SetFlag, KernelBlock)) for s in walk(self.body))

    @property
    def draws_comparable(self) -> bool:
        """Whether every run draws the same dropout: each call is made right after
        seeding torch's generator, so eager, float64 and compiled draw alike, unless a
        random statement's output is never used (AOTAutograd then drops its draws, and
        the next random statement draws what it would have)."""
        live = set(self.returns)
        for stmt in reversed(list(walk(self.body))):
            if getattr(stmt, "out", None) in live:
                live |= {getattr(stmt, f, None) for f in ("query", "key", "value", "mask",
                                                          "source", "params", "x")}
        return all(s.out in live for s in self.random_statements)


@dataclass(frozen=True)
class CompileSpec:
    """The `torch.compile` settings. `backend` is what the case was found with; replay may
    override it."""

    backend: str = "eager"
    fullgraph: bool = False
    dynamic: bool | None = None
    mode: str | None = None
    mark_dynamic: bool = False  # torch._dynamo.mark_dynamic on every sequence-length dim
    # torch._inductor.config.freezing, set while the compiled function runs: under a
    # disabled grad mode, Dynamo guards parameters by identity and Inductor folds them
    freezing: bool = False

    def validate(self) -> None:
        _require(isinstance(self.backend, str) and self.backend != "", "backend must be named")
        _require(self.mode in (None, "default", "reduce-overhead", "max-autotune",
                               "max-autotune-no-cudagraphs"), f"unknown mode {self.mode!r}")


def grow_dims(case: "Case") -> dict[str, tuple[int, ...]]:
    """Per tensor input of a single SDPA call, 1 on the dims that are a sequence length:
    L of the query, S of key and value, and the mask's L and S where not broadcast (a
    rank-1 mask has S alone: left static, it pinned the marked S of the key and value,
    and Dynamo raised ConstraintViolationError where eager ran)."""
    body = case.program.body
    if len(body) != 1 or not isinstance(body[0], Attention):
        return {}
    a = body[0]
    dims: dict[str, tuple[int, ...]] = {}
    for name in (a.query, a.key, a.value, a.mask):
        spec = case.spec(name) if name is not None else None
        if not isinstance(spec, TensorSpec) or not spec.shape or \
                name != a.mask and len(spec.shape) < 2:
            continue
        marks = [0] * len(spec.shape)
        if name == a.mask:
            marks[-1] = int(spec.shape[-1] != 1)
            if len(spec.shape) >= 2:
                marks[-2] = int(spec.shape[-2] != 1)
        else:
            marks[-2] = 1
        dims[name] = tuple(marks)
    return dims


def marked_dims(case: "Case") -> dict[str, list[int]]:
    """Per input, the dims `CompileSpec.mark_dynamic` marks before each compiled call: its
    sequence-length dims (`grow_dims`); none without it."""
    if not case.compile.mark_dynamic:
        return {}
    return {name: [d for d, grows in enumerate(dims) if grows]
            for name, dims in grow_dims(case).items()}


def attention_feeds(case: Case) -> dict[str, tuple[int, ...]]:
    """The names whose values some attention computes, directly or through the program's
    other statements, each with the attentions that feed it (indices in program order);
    every other value is a few exact ops on the inputs."""
    feeds: dict[str, set[int]] = {}
    attentions = 0
    for stmt in walk(case.program.body):
        if isinstance(stmt, (Attention, HandAttention, ModelAttention, ModuleCall)):
            # An attention fed by another's output (stacked layers) is fed by both.
            feeds[stmt.out] = {attentions}.union(*(feeds[n] for n in vars(stmt).values()
                                                   if isinstance(n, str) and n in feeds))
            if isinstance(stmt, ModuleCall) and stmt.weights_out:
                feeds[stmt.weights_out] = set(feeds[stmt.out])
            attentions += 1
        elif isinstance(stmt, Shift) and stmt.source in feeds:
            feeds[stmt.out] = set(feeds[stmt.source])
        elif isinstance(stmt, BuildParams):
            sources = [feeds[n] for n in (stmt.query, stmt.key, stmt.value, stmt.mask)
                       if n in feeds]
            if sources:
                feeds[stmt.out] = set().union(*sources)
        elif isinstance(stmt, ParamsAttr) and stmt.params in feeds:
            feeds[stmt.out] = set(feeds[stmt.params])
    return {name: tuple(sorted(which)) for name, which in feeds.items()}


def hidden_input(case: Case, layer: ModelAttention) -> TensorSpec | None:
    """The input a model layer's hidden state comes from, through the layers stacked
    before it (their outputs keep its shape)."""
    layers = {s.out: s for s in walk(case.program.body) if isinstance(s, ModelAttention)}
    name = layer.x
    while name in layers:
        name = layers[name].x
    spec = dict(case.inputs).get(name)
    return spec if isinstance(spec, TensorSpec) else None


def exact_ops(case: Case) -> int:
    """The ulps a value no attention feeds may differ by: one per elementwise op the
    program applies (mutations and shifts), and one for the value itself."""
    return 1 + sum(isinstance(s, (Mutate, Shift)) for s in walk(case.program.body))



@dataclass(frozen=True)
class Case:
    """A whole fuzz case: named inputs, the program, and how to compile it."""

    inputs: tuple[tuple[str, TensorSpec | ParamsInput | ModuleInput], ...]
    program: Program
    compile: CompileSpec = field(default_factory=CompileSpec)
    device: str = "cpu"
    calls: tuple[CallContext, ...] = (CallContext(),)
    backward: bool = False  # run backward from seeded upstream gradients after each call

    def __post_init__(self) -> None:
        self.validate()

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.inputs)

    def spec(self, name: str) -> TensorSpec | ParamsInput | ModuleInput:
        return dict(self.inputs)[name]

    def reseeded(self, salt: int) -> "Case":
        """The same case with fresh input values: a compiled program for one serves both."""
        return replace(self, inputs=tuple(
            (name, replace(spec, seed=reseed(spec.seed, salt))
             if isinstance(spec, TensorSpec) else spec) for name, spec in self.inputs))

    def validate(self) -> None:
        _require(self.device in DEVICES, f"device {self.device!r} not in {DEVICES}")
        names = self.input_names
        _require(len(set(names)) == len(names), f"input names repeat: {names}")
        tensors = {n: spec for n, spec in self.inputs if isinstance(spec, TensorSpec)}
        for name, spec in self.inputs:
            _require(name.isidentifier(), f"input name {name!r} is not an identifier")
            if isinstance(spec, TensorSpec):
                spec.validate(name)
            elif isinstance(spec, ModuleInput):
                spec.validate(name, tensors)
            else:
                spec.validate(name, set(tensors))
        self.program.validate({n: "tensor" if n in tensors else "module" if isinstance(
            s, ModuleInput) else "params" for n, s in self.inputs})
        self.compile.validate()
        _require(1 <= len(self.calls) <= MAX_CALLS, f"a case makes 1 to {MAX_CALLS} calls")
        for call in self.calls:
            call.validate()
        if any(call.grow for call in self.calls):
            _require(len(self.program.body) == 1 and isinstance(self.program.body[0], Attention),
                     "calls of other sizes (grow) need a program of one SDPA call")
            for name, dims in grow_dims(self).items():
                spec = self.spec(name)
                assert isinstance(spec, TensorSpec)
                big = max(c.grow for c in self.calls)
                _require(all(d + g * big <= MAX_DIM for d, g in zip(spec.shape, dims)),
                         f"input {name!r}: growing it by {big} goes past {MAX_DIM}")
        _require(not self.backward or any(
            isinstance(s, TensorSpec) and s.requires_grad for _, s in self.inputs),
            "backward needs an input that requires grad")
