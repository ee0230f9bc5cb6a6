"""Oracle rules that waive nothing: each test runs a real case on a real backend (or real
tensors) and shows a divergence that an earlier rule let pass."""

from __future__ import annotations

import torch

from fuzz.case import Attention, Case, Mutate, Program, TensorSpec
from fuzz.execute import run_case
from fuzz.materialize import build_tensor
from fuzz.errors import same_error
from fuzz.oracle import compare_storage, judge


def qkv(shape=(1, 2, 3, 4)) -> tuple:
    return tuple((n, TensorSpec(shape, seed=i)) for i, n in enumerate("qkv"))


def test_a_dropped_mutation_is_caught_beside_a_badly_conditioned_attention() -> None:
    """`q.mul_(0.5)` lost by the backend, in a program whose attention (on k) has a large
    scale: a conditioning applied to every leaf let this pass."""
    case = Case(qkv(), Program((Mutate("q", "mul_", 0.5),
                                Attention("out", query="k", scale=1e9)), ("out",)))
    verdict = judge(case, run_case(case, "tests.faults:clone_inputs"))
    assert "mutation:input" in {f.key for f in verdict.failures}, verdict.explain()
    assert judge(case, run_case(case, "eager")).ok


def detaching(gm: torch.fx.GraphModule, example_inputs):
    """A backend whose graph outputs no longer require grad."""
    def run(*args):
        return [t.detach() if isinstance(t, torch.Tensor) else t for t in gm.forward(*args)]
    return run


def test_requires_grad_of_outputs_is_compared() -> None:
    spec = TensorSpec((1, 2, 3, 4), requires_grad=True)
    case = Case(tuple((n, spec) for n in "qkv"), Program((Attention("out"),), ("out",)))
    verdict = judge(case, run_case(case, "tests.test_oracle:detaching"))
    assert any(f.check == "metadata" and "requires_grad" in f.detail
               for f in verdict.failures), verdict.explain()


def test_a_write_outside_a_view_is_caught() -> None:
    """An `offset` input lies inside a larger buffer; a byte written before its view is a
    divergence though the view itself is equal."""
    def offset():
        return build_tensor((2, 3), "float32", "normal", "offset", seed=5)
    eager, compiled = offset(), offset()
    assert compare_storage("input q", eager, compiled) == []
    base = torch.empty(0, dtype=compiled.dtype).set_(compiled.untyped_storage())
    base[0] = 42.0  # outside the view, which starts 3 elements in
    assert torch.equal(eager, compiled)
    [failure] = compare_storage("input q", eager, compiled)
    assert failure.key == "mutation:input-storage"


def test_a_compiler_crash_is_not_the_error_eager_raised() -> None:
    """A backend that fails with eager's very type (RuntimeError) and text still crashed:
    the old rule took any instance of eager's type in the cause chain as the same error."""
    def crashing(gm, example_inputs):
        raise RuntimeError("boom")

    x = torch.ones(2)
    try:
        torch.compile(lambda t: t + 1, backend=crashing)(x)
    except Exception as exc:  # noqa: BLE001 - the compiled error under test
        compiled = exc
    assert not same_error(RuntimeError("boom"), compiled)
    try:  # a fake-tensor error while tracing is the user's error, wrapped
        torch.compile(lambda t: t @ torch.ones(3), backend="eager")(x)
    except Exception as exc:  # noqa: BLE001
        traced = exc
    assert same_error(RuntimeError("size mismatch"), traced)
