"""Oracle rules that waive nothing: each test runs a real case on a real backend (or real
tensors) and shows a divergence that an earlier rule let pass."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from fuzz.case import Attention, Case, Mutate, Program, TensorSpec
from fuzz.execute import run_case
from fuzz.materialize import build_tensor
from fuzz.errors import same_error
from fuzz.calls import Frames, Observation
from fuzz.check import Bound, Plan, Scores, compare_storage, compare_tensor, judge as judge_runs
from fuzz.sdpa_state import current_state
from fuzz.oracle import judge
from fuzz.corpus import load_entry

CORPUS = Path(__file__).resolve().parent.parent / "corpus"


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


def perturbing_last(gm: torch.fx.GraphModule, example_inputs):
    """A backend whose graph's last output is off by a thousandth of its largest value."""
    def run(*args):
        outs = list(gm.forward(*args))
        outs[-1] = outs[-1] + 1e-3 * outs[-1].abs().max()
        return outs
    return run


def test_each_value_is_conditioned_by_the_attentions_that_feed_it_alone() -> None:
    """`b` comes from a well-conditioned attention; `a`, beside it, from one whose scale
    is huge. One conditioning for the whole program let an error in `b` of 1e-3 of its
    magnitude pass, 10^6 times what its own rounding explains."""
    case = Case(qkv(), Program((Attention("a", scale=1e6), Attention("b")), ("a", "b")))
    verdict = judge(case, run_case(case, "tests.test_oracle:perturbing_last"))
    assert "values:attention" in {f.key for f in verdict.failures}, verdict.explain()
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


def test_eager_accepting_a_value_longer_than_the_key_is_eager_s_bug() -> None:
    """CPU flash runs SDPA on a key of 7 and a value of 8 positions, reading past the
    value; compiled code that reads elsewhere, or raises as the math kernel does, is not
    wrong. The call is excused, and counted as such, not compared."""
    q, k, v = (TensorSpec((1, 2, n, 4), seed=i) for i, n in enumerate((1, 7, 8)))
    case = Case((("q", q), ("k", k), ("v", v)), Program((Attention("out"),), ("out",)))
    verdict = judge(case, run_case(case, "tests.test_oracle:perturbing_last"))
    if verdict.excused:  # eager accepted it: nothing to hold compiled to
        assert verdict.ok and verdict.excused == ("eager-accepts-unequal-key-value-lengths",)
    else:  # a torch whose eager refuses it: the outcome is compared as ever
        assert verdict.ok


def test_each_output_row_is_held_to_its_own_conditioning() -> None:
    """Query row 0 is 1e6 times larger than the others, so its scores (and only its) may
    carry rounding that large; an error of 1e-3 in row 1 hid under it while the worst
    row's conditioning stood for every row. Judged on real tensors under a plan."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 1, 4, 8) for _ in range(3))
    q[..., 0, :] *= 1e6
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    ref_in = {n: t.double() for n, t in zip("qkv", (q, k, v))}
    ref = torch.nn.functional.scaled_dot_product_attention(*ref_in.values())
    wrong = out.clone()
    wrong[..., 1, :] += 1e-3 * out.abs().max()

    def observed(leaf, inputs):
        return Observation((leaf,), ((),), "*", None, inputs, current_state())

    plan = Plan(returns=("out",), input_names=("q", "k", "v"), tensor_inputs=(),
                origins={"out": "attention"}, scores=(Scores("q", "k", "v"),),
                feeders={"out": (0,)}, exact_ops=1)
    inputs = dict(zip("qkv", (q, k, v)))
    judged = judge_runs(plan, (observed(out, inputs),), (observed(ref, ref_in),),
                        (observed(wrong, inputs),), Frames((1,), 0))
    assert [f.key for f in judged.failures] == ["values:attention"], judged.failures
    judged = judge_runs(plan, (observed(out, inputs),), (observed(ref, ref_in),),
                        (observed(out.clone(), inputs),), Frames((1,), 0))
    assert judged.failures == []


def perturbing_by_a_hundredth(gm: torch.fx.GraphModule, example_inputs):
    """Inductor, with the graph's last output off by a hundredth of its largest value."""
    compiled = torch._inductor.compile(gm, example_inputs)

    def run(*args):
        outs = list(compiled(*args))
        outs[-1] = outs[-1] + 1e-2 * outs[-1].abs().max()
        return outs
    return run


def test_a_tensor_of_no_elements_has_no_layout_to_compare() -> None:
    """Inductor's zero-size SDPA output had strides (28, 14, 14, 14, 1) where eager's were
    (0, 0, 14, 0, 1): no memory is addressed, so no caller can tell. The same strides on
    a tensor with elements are a layout a `view` sees."""
    def strided(shape, stride):
        return torch.empty_strided(shape, stride).zero_()

    for shape, failed in (((1, 2, 0, 1, 14), []), ((1, 2, 1, 1, 14), ["stride"])):
        e, c = strided(shape, (0, 0, 14, 0, 1)), strided(shape, (28, 14, 14, 14, 1))
        found, _ = compare_tensor("out", e, c, e.double(), True, Bound())
        assert [f.check for f in found] == failed, found


def test_rounding_computed_operands_is_allowed_where_they_are_computed_and_no_more() -> None:
    """A float16 layer whose operands are a projection and a rotary embedding: eager's
    error was 0.0025 by luck, Inductor's 0.010 failed, and float64 SDPA on the float64
    operands rounded once to float16 is 0.009 off. That run is the floor now; an error of
    a hundredth of the output is still caught, and SDPA on inputs, which float16 holds
    exactly, gets no such run."""
    case = load_entry(CORPUS / "model-rotary-float16-operand-rounding.json").case
    run = run_case(case, "inductor")
    verdict = judge(case, run)
    assert verdict.ok, verdict.explain()
    [(_, _, floor, _)] = verdict.bounds
    assert run.rounded[0] is not None and floor > 0.008
    assert "values:model_attention" in {f.key for f in judge(case, run_case(
        case, "tests.test_oracle:perturbing_by_a_hundredth")).failures}
    plain = Case(tuple((n, replace(s, dtype="float16")) for n, s in qkv()),
                 Program((Attention("out"),), ("out",)))
    assert run_case(plain, "eager").rounded == (None,)


def raising_before_its_graph(gm: torch.fx.GraphModule, example_inputs):
    """A backend whose compiled code raises before it runs its graph."""
    def run(*args):
        raise RuntimeError("refused by the backend")
    return run


def test_what_follows_an_outcome_divergence_is_checked_and_listed_on_it() -> None:
    """Eager mutates `q`; the compiled call raises before it does. The input still
    differs after the call and is reported, but as what followed the outcome: a known
    outcome bug covers the case, and the difference never comes back as a bug of its own
    (aot_eager's `mul_` on a bool mask, finding 5, came back as
    `backend-state:after-call:enabled`: eager raised, compiled went on to turn a kernel
    off)."""
    case = Case(qkv(), Program((Mutate("q", "mul_", 0.5), Attention("out")), ("out",)))
    verdict = judge(case, run_case(case, "tests.test_oracle:raising_before_its_graph"))
    assert [f.check for f in verdict.failures if f.follows == "outcome"] == ["mutation"], \
        verdict.explain()
    assert [f.check for f in verdict.own_failures] == ["outcome"], verdict.explain()
    assert "(follows the outcome)" in verdict.explain()
