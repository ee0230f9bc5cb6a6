"""The Case: one fuzzed attention program as pure, versioned data.

A Case holds no tensors and no callables, only specs that `codegen` turns into source and
that the executor materialises identically in every process. Validation lives here so that
a Case that exists is a Case that can run.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

SCHEMA_VERSION = 1

FLOAT_DTYPES = ("float32", "float64", "bfloat16", "float16")
MASK_DTYPES = FLOAT_DTYPES + ("bool",)
VALUE_KINDS = ("normal", "tiny", "large", "repeated")
MASK_VALUE_KINDS = ("random", "full_rows", "additive")
LAYOUTS = ("contiguous", "transposed", "permuted", "offset", "strided", "expanded")
DEVICES = ("cpu", "cuda")
MAX_DIM = 512
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
        _require(all(isinstance(d, int) and 1 <= d <= MAX_DIM for d in self.shape),
                 f"{where}: every dim must be an int in 1..{MAX_DIM}, got {self.shape}")
        numel = 1
        for d in self.shape:
            numel *= d
        _require(numel <= MAX_NUMEL, f"{where}: {numel} elements is over {MAX_NUMEL}")
        kinds = MASK_VALUE_KINDS if self.is_mask else VALUE_KINDS
        _require(self.values in kinds, f"{where}: values {self.values!r} not in {kinds}")
        dtypes = MASK_DTYPES if self.is_mask else FLOAT_DTYPES
        _require(self.dtype in dtypes, f"{where}: dtype {self.dtype!r} not in {dtypes}")
        _require(not (self.dtype == "bool" and self.values == "additive"),
                 f"{where}: a bool mask cannot be additive")
        _require(self.layout in LAYOUTS, f"{where}: layout {self.layout!r} not in {LAYOUTS}")
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
        _require(not (self.requires_grad and self.dtype == "bool"),
                 f"{where}: a bool tensor cannot require grad")


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

    def validate(self, names: set[str]) -> None:
        for ref in (self.query, self.key, self.value) + ((self.mask,) if self.mask else ()):
            _require(ref in names, f"attention reads {ref!r}, which is not defined before it")
        _require(0.0 <= self.dropout_p < 1.0, f"dropout_p {self.dropout_p} not in [0, 1)")
        _require(self.scale is None or isinstance(self.scale, float),
                 f"scale must be a float or null, got {self.scale!r}")

    @property
    def reads(self) -> tuple[str, ...]:
        return (self.query, self.key, self.value) + ((self.mask,) if self.mask else ())


Statement = Attention
STATEMENTS: dict[str, type] = {"attention": Attention}


@dataclass(frozen=True)
class Program:
    """The body of the function under test and the names it returns, in order."""

    body: tuple[Statement, ...]
    returns: tuple[str, ...]

    def validate(self, inputs: tuple[str, ...]) -> None:
        _require(len(self.body) >= 1, "a program needs at least one statement")
        names = set(inputs)
        for stmt in self.body:
            stmt.validate(names)
            _require(stmt.out not in names, f"{stmt.out!r} is assigned twice")
            names.add(stmt.out)
        _require(len(self.returns) >= 1, "a program must return something")
        for name in self.returns:
            _require(name in names, f"the program returns {name!r}, which it never defines")

    @property
    def has_dropout(self) -> bool:
        return any(s.dropout_p > 0 for s in self.body)


@dataclass(frozen=True)
class CompileSpec:
    """The `torch.compile` settings. `backend` is what the case was found with; replay may
    override it."""

    backend: str = "eager"
    fullgraph: bool = False
    dynamic: bool | None = None
    mode: str | None = None

    def validate(self) -> None:
        _require(isinstance(self.backend, str) and self.backend != "", "backend must be named")
        _require(self.mode in (None, "default", "reduce-overhead", "max-autotune",
                               "max-autotune-no-cudagraphs"), f"unknown mode {self.mode!r}")


@dataclass(frozen=True)
class Case:
    """A whole fuzz case: named inputs, the program, and how to compile it."""

    inputs: tuple[tuple[str, TensorSpec], ...]
    program: Program
    compile: CompileSpec = field(default_factory=CompileSpec)
    device: str = "cpu"

    def __post_init__(self) -> None:
        self.validate()

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.inputs)

    def spec(self, name: str) -> TensorSpec:
        return dict(self.inputs)[name]

    def reseeded(self, salt: int) -> "Case":
        """The same case with fresh input values: a compiled program for one serves both."""
        return replace(self, inputs=tuple(
            (name, replace(spec, seed=(spec.seed + salt * 0x9E3779B1) % 2**63))
            for name, spec in self.inputs))

    def validate(self) -> None:
        _require(self.device in DEVICES, f"device {self.device!r} not in {DEVICES}")
        names = self.input_names
        _require(len(set(names)) == len(names), f"input names repeat: {names}")
        for name, spec in self.inputs:
            _require(name.isidentifier(), f"input name {name!r} is not an identifier")
            spec.validate(name)
        self.program.validate(names)
        self.compile.validate()
