"""Inputs are bit-identical across processes, and each layout is the memory layout it names."""

from __future__ import annotations

import hashlib
import multiprocessing

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz.case import Case
from fuzz.caseio import case_from_json, case_to_json
from fuzz.codegen import input_factory
from fuzz.materialize import build_tensor
from strategies import cases


def digest(case: Case) -> str:
    h = hashlib.sha256()
    for name, t in sorted(input_factory(case)().items()):
        if not isinstance(t, torch.Tensor):
            continue  # an SDPAParams input is built from the tensors hashed here
        h.update(name.encode())
        h.update(str((t.shape, t.stride(), t.dtype)).encode())
        dense = torch.empty(t.shape, dtype=t.dtype).copy_(t)  # standard strides, even size-1
        h.update(dense.numpy().tobytes() if t.dtype == torch.bool
                 else dense.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def storage_bytes(t: torch.Tensor) -> torch.Tensor:
    """Every byte of `t`'s storage, as uint8: `bytes(storage)` reads it one Python int at
    a time, 1.5 s for a 53 x 256 query (this test took 117 s of CI)."""
    return torch.empty(0, dtype=torch.uint8).set_(t.untyped_storage())


@pytest.fixture(scope="module")
def fresh_process():
    """A process per call, forked from a server that has imported torch alone: an
    `import torch` per example was most of this test's 24 s."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch"])
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        yield pool


def digests(batch: list[str]) -> list[str]:
    return [digest(case_from_json(case)) for case in batch]


@settings(max_examples=3)
@given(batch=st.lists(cases(), min_size=8, max_size=8))
def test_inputs_are_bit_identical_in_a_fresh_process(batch: list[Case], fresh_process) -> None:
    theirs = fresh_process.apply(digests, ([case_to_json(case) for case in batch],))
    assert theirs == [digest(case) for case in batch]


@pytest.mark.parametrize("layout, kwargs, check", [
    ("contiguous", {}, lambda t: t.is_contiguous()),
    ("transposed", {}, lambda t: t.stride(-2) == 1 and not t.is_contiguous()),
    ("permuted", {"perm": (2, 0, 1)}, lambda t: t.stride(1) == 1 and t.stride(0) == 3),
    ("offset", {}, lambda t: t.storage_offset() == 3 and t.is_contiguous()),
    ("strided", {}, lambda t: t.stride(-1) == 2),
    ("expanded", {"expand_dim": 0}, lambda t: t.stride(0) == 0),
])
def test_layouts(layout: str, kwargs: dict, check) -> None:
    t = build_tensor((2, 3, 4), "float32", "normal", layout, 7, **kwargs)
    assert t.shape == (2, 3, 4) and check(t)
    assert torch.equal(t, build_tensor((2, 3, 4), "float32", "normal", "contiguous", 7)) \
        or layout == "expanded"


def test_value_kinds_and_masks() -> None:
    assert build_tensor((2, 3, 4), "float32", "tiny", "contiguous", 1).abs().max() < 1e-2
    assert build_tensor((2, 3, 4), "float32", "large", "contiguous", 1).abs().max() > 10
    rep = build_tensor((2, 3, 4), "float32", "repeated", "contiguous", 1)
    assert torch.equal(rep[:, 0], rep[:, 2])
    rows = build_tensor((3, 5), "bool", "full_rows", "contiguous", 1)
    assert not rows[0].any() and rows.dtype == torch.bool
    neg = build_tensor((3, 5), "float16", "random", "contiguous", 1)
    assert neg.dtype == torch.float16 and torch.isneginf(neg).any()
    assert torch.isfinite(build_tensor((3, 5), "float32", "additive", "contiguous", 1)).all()


@settings(max_examples=60, deadline=None)
@given(case=cases())
def test_minimal_inputs_build_the_fuzzers_bits(case: Case) -> None:
    """A minimal repro builds its inputs with only the operations they need, yet the very
    bits, strides, offsets and storage `build_tensor` gives: its divergence is the fuzzer's."""
    from fuzz.minimal import inputs_source

    source, _ = inputs_source(case, 1, cast=False)
    namespace: dict = {"torch": torch}
    exec(compile(source, "<minimal inputs>", "exec"), namespace)
    first = case.calls[0]
    theirs = input_factory(case)(salt=first.reseed, grow=first.grow)
    ours = namespace["inputs"]()
    for name, t in theirs.items():
        if not isinstance(t, torch.Tensor):
            continue
        x = ours[name]
        assert (x.dtype, x.shape, x.stride(), x.storage_offset(), x.requires_grad) == \
            (t.dtype, t.shape, t.stride(), t.storage_offset(), t.requires_grad), name
        assert torch.equal(storage_bytes(x), storage_bytes(t)), name
