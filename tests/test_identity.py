"""Bug identity: a known bug silences only itself.

Each test takes a real failure, judged by the oracle on a real backend, and asks the same
question `sdpa-fuzz run --known corpus` and the property test ask: does a bug on record in
the committed corpus cover it? A new bug whose coarse signature (`check:where:condition`)
a known bug shares must still be new.
"""

from __future__ import annotations

import json

from pathlib import Path

from dataclasses import replace

from fuzz.case import (MUTATIONS, Attention, CallContext, Case, CompileSpec, HandAttention,
                       KernelBlock, ModuleCall, ModuleInput, Mutate, Program, Shift,
                       TensorSpec, module_parameters)
from fuzz.corpus import known_bugs, load_entry
from fuzz.driver import failing_call_alone
from fuzz.errors import message_class
from fuzz.execute import run_case
from fuzz.identity import backend_layers, features, probed
from fuzz.oracle import judge

CORPUS = Path(__file__).resolve().parent.parent / "corpus"


def known(backend: str):
    return known_bugs(CORPUS, backend, backend_layers(backend))


def covered(case: Case, backend: str) -> list[tuple[str, bool]]:
    """(signature, whether a known bug covers it) for each failure of the case."""
    verdict = judge(case, run_case(case, backend))
    assert not verdict.ok, f"{backend} does not fail the case"
    found = features(case)
    return [(f.signature, any(b.identity.covers(f.key, found) for b in known(backend)))
            for f in verdict.failures]


def qkv(shape=(1, 2, 3, 4), **changes) -> tuple:
    return tuple((n, TensorSpec(shape, seed=i, **changes)) for i, n in enumerate("qkv"))


def test_a_compiler_crash_is_new_although_its_coarse_signature_is_known() -> None:
    """Finding 4's entry was recorded as `outcome:call:compiled-raised-BackendCompilerFailed`:
    under that signature every compiler crash on an SDPA call was known."""
    crash = Case(qkv(), Program((Attention("out", scale=-0.5),), ("out",)))
    results = covered(crash, "tests.faults:compile_crash_negative_scale")
    assert results and not any(hit for _, hit in results), results
    assert any(s.startswith("outcome:call:compiled-raised-internal-AssertionError")
               for s, _ in results), results
    # The report names the backend under test, not the harness's frame counter.
    explained = judge(crash, run_case(crash, "tests.faults:compile_crash_negative_scale")
                      ).explain()
    assert "backend='compile_crash_negative_scale' raised" in explained, explained


def test_a_backend_state_leak_is_new_although_its_coarse_signature_is_known() -> None:
    """kernel_exit_dropped leaks the block's backends: `backend-state:after-call:enabled`,
    the coarse signature of findings 1 and 8, which hid it under `--known corpus`."""
    assert any(b.identity.key.startswith("backend-state:after-call:enabled")
               for b in known("tests.faults:kernel_exit_dropped"))
    leak = Case(qkv(), Program((KernelBlock(("MATH",), (Attention("out"),)),), ("out",)))
    results = covered(leak, "tests.faults:kernel_exit_dropped")
    assert ("backend-state:after-call:enabled", False) in results, results


def test_a_known_bug_still_covers_its_own_case_and_its_symptoms() -> None:
    """The softmax-dim bug (finding 13) covers its entry's case, and the same case in
    float64 or with an additive mask: other dtypes and other rewrite patterns of one bug."""
    entry = load_entry(CORPUS / "known-rewrite-softmax-dim-ignored.json")
    base = replace_inputs(entry.case, dtype="float64")
    assert all(hit for _, hit in covered(entry.case, "inductor"))
    assert all(hit for _, hit in covered(base, "inductor"))


def test_an_error_in_a_kernel_block_is_finding_8_whatever_else_reads_its_bool_input() -> None:
    """Features name a tensor by its role: a bool tensor that an SDPA call reads as its
    mask before `mul_` raises on it inside the block is `mask:dtype=bool`, not
    `input:dtype=bool`. A clean eager run reported that form four times as new."""
    inputs = qkv((1, 1, 2, 2)) + (("mask", TensorSpec((2, 2), dtype="bool", values="random")),)
    for style in ("with", "decorator"):
        block = KernelBlock(("MATH",), (Mutate("mask", "mul_"),), style=style)
        case = Case(inputs, Program((Attention("out", mask="mask"), block), ("out",)))
        results = covered(case, "eager")
        assert ("backend-state:after-call:enabled", True) in results, results


def replace_inputs(case: Case, **changes) -> Case:
    return replace(case, inputs=tuple((n, replace(s, **changes)) for n, s in case.inputs))


def test_known_bugs_hold_only_for_their_layer_and_torch_range(tmp_path) -> None:
    """An Inductor bug is not known to a Dynamo-only backend; a bug of a torch range that
    excludes this torch is not known at all."""
    inductor_only = {b.entry for b in known("inductor")} - {b.entry for b in known("eager")}
    assert "known-rewrite-softmax-dim-ignored.json" in inductor_only
    assert {b.entry for b in known("eager")} <= {b.entry for b in known("aot_eager")}
    entry = json.loads((CORPUS / "known-rewrite-softmax-dim-ignored.json").read_text())
    entry["expect"]["torch_below"] = entry["expect"]["torch_min"]  # a range that holds nothing
    (tmp_path / "old.json").write_text(json.dumps(entry))
    assert not known_bugs(tmp_path, "inductor", backend_layers("inductor"))


def test_shrinking_never_turns_a_new_failure_into_a_known_one() -> None:
    """Covering needs every feature of the known bug: a case with fewer features (what
    shrinking makes) is covered by no more bugs than the case it came from."""
    full = Case(qkv((1, 2, 1, 4), dtype="bfloat16"),
                Program((Shift("q2", "q"), Attention("out", query="q2", is_causal=True)),
                        ("out",)), CompileSpec(dynamic=True))
    plain = Case(qkv((1, 2, 1, 4)), Program((Attention("out"),), ("out",)))
    assert features(plain) < features(full)
    # One query row is what shrinking goes to, so it is no feature: a crash shrunk to one
    # row once failed to cover the same crash stuck at nine rows, and was reported twice.
    assert features(plain) == frozenset({"sdpa"})
    assert features(replace(plain, inputs=qkv((1, 2, 9, 4)))) > features(plain)
    assert {"calls", "calls:context"} <= features(replace(plain, calls=(CallContext(("MATH",), True),)))


def test_a_later_call_that_fails_alone_is_its_bug_without_the_calls_before() -> None:
    """GPT-2's fully masked row (finding 11) drawn by a random mask on a second call's
    values: shrinking cannot drop the first call (the second would get its mask, which
    masks no whole row), so the run reported it as a new `@later-call` bug. As its failing
    call alone it is the known bug, and the row its mask draws is a feature of the case."""
    entry = load_entry(CORPUS / "known-rewrite-gpt2-fully-masked-row.json")
    drawn = replace(entry.case, inputs=tuple(
        (n, replace(s, values="random", seed=2) if n == "mask" else s)
        for n, s in entry.case.inputs), calls=(CallContext(), CallContext(reseed=1)))
    assert "mask:values=full_rows" in features(drawn)
    assert "mask:values=full_rows" not in features(replace(drawn, calls=(CallContext(),)))

    def verdict(case: Case):
        return judge(case, run_case(case, "inductor"))

    [failure] = [f for f in verdict(drawn).failures if f.check == "values"]
    assert failure.call == 1 and failure.key.endswith("@later-call")
    case, _, alone = failing_call_alone(drawn, failure, verdict)
    assert len(case.calls) == 1 and alone.key == "values:hand_attention"
    assert any(b.identity.covers(alone.key, features(case)) for b in known("inductor"))


def test_probing_makes_one_identity_of_a_bug_seen_at_several_settings() -> None:
    """Finding 25 as a clean 23-minute run met it: one crash, reported under ten
    identities, in float16 and bfloat16, with scales from the size (which needs
    `dynamic=True`), a Python float or a tensor, and a key transpose that shrinking kept
    though the bug needs none. `alike` stands for the backend, with the bug's condition as
    measured on Inductor (a probe there takes 15 s; tests/test_identity.py's real
    failures cover the judging)."""
    def crashes(case: Case) -> bool:
        [hand], dtype = case.program.body, case.inputs[0][1].dtype
        return hand.layout == "bshe" and dtype in ("float16", "bfloat16") and (
            hand.scale_type in ("full", "tensor", "tensor_float64")
            or (hand.scale_type == "size" and case.compile.dynamic is True))

    def found(dtype="float16", dynamic=True, **hand) -> Case:
        stmt = HandAttention("out", layout="bshe", perm=(0, 2, 1, 3), **hand)
        return Case(qkv((2, 3, 2, 2), dtype=dtype), Program((stmt,), ("out",)),
                    CompileSpec(dynamic=dynamic))

    shrunk = found(key_t="transpose_rev", scale_type="size")
    probes = []
    case, evidence, identity = probed(shrunk, "crash", "k", lambda c: probes.append(c) or (
        "crash" if crashes(c) else None), 20)
    assert len(probes) <= 20 and crashes(case) and evidence == "crash"
    assert case.compile.dynamic is None and case.program.body[0].key_t == "transpose"
    seen = [found(dtype, dynamic, scale_type=scale, key_t=key_t)
            for dtype, dynamic, scale, key_t in (
                ("bfloat16", True, "size", "transpose_rev"), ("float16", None, "full", "mT"),
                ("bfloat16", None, "tensor", "transpose"), ("float16", False, "tensor_float64",
                                                            "transpose_rev"))]
    assert all(identity.covers("k", features(c)) for c in seen), identity.name
    # Never covered: a dtype no probe saw failing, another key, a case without the layout.
    assert not identity.covers("k", features(found("float64", scale_type="full")))
    assert not identity.covers("other", features(seen[0]))
    assert not identity.covers("k", features(Case(qkv(), Program((HandAttention(
        "out", scale_type="full"),), ("out",)))))
    assert probed(shrunk, "crash", "k", lambda c: "crash", 0)[2].features == features(shrunk)


def test_probing_merges_the_mutation_methods_a_bug_shows_under() -> None:
    """Finding 20 came back once per in-place form (`add_`, `mul_`, `+=`): a mutation's
    method is a knob with no plain setting, whose settings that fail alike become one
    identity's alternatives, and the others stay uncovered."""
    def mutated(method: str) -> Case:
        return Case(qkv(), Program((Attention("out"), Mutate("q", method, 2.0)), ("out",)))

    def alike(case: Case) -> str | None:
        return "lost" if case.program.body[1].method in ("add_", "mul_", "iadd") else None

    case, _, identity = probed(mutated("mul_"), "lost", "k", alike, 20)
    assert case == mutated("mul_")
    assert [identity.covers("k", features(mutated(m))) for m in MUTATIONS] == [
        m in ("add_", "mul_", "iadd") for m in MUTATIONS]


def test_probing_sets_a_module_option_the_bug_does_not_need_plain() -> None:
    """Finding 28 in an encoder layer, judged for real on Dynamo's `eager` backend: the
    stride divergence needs `batch_first` and `norm_first` (without it the output is a
    layer norm's, contiguous either way), not the gelu activation shrinking kept."""
    def layer(**options) -> Case:
        m = ModuleInput("encoder_layer", 4, 2, (), batch_first=True, bias=False,
                        feedforward=1, **options)
        params = tuple((path, f"w{i}") for i, path in enumerate(module_parameters(m)))
        m = replace(m, params=params)
        return Case((("x", TensorSpec((2, 3, 4), layout="expanded")), ("attn", m))
                    + tuple((ref, TensorSpec(module_parameters(m)[path], seed=i))
                            for i, (path, ref) in enumerate(params)),
                    Program((ModuleCall("out", "attn", "x"),), ("out",)),
                    CompileSpec("eager"))

    def alike(case: Case) -> str | None:
        keys = {f.key for f in judge(case, run_case(case, "eager")).failures}
        return "stride" if "stride:module_call" in keys else None

    case, _, identity = probed(layer(norm_first=True, activation="gelu"), "stride",
                               "stride:module_call", alike, 20)
    assert case.spec("attn").activation == "relu", case.spec("attn")
    assert {"module:batch_first", "module:norm_first"} <= identity.features
    assert "module:activation=gelu" not in identity.features


def test_an_error_s_message_class_is_one_whether_its_sizes_are_numbers_or_symbols() -> None:
    """Under dynamic shapes Dynamo's fake tensors name sizes by symbols and expressions;
    finding 32's `view` error came back as new from a clean Inductor run because its
    strides read `(s0**2*s85, s0, s0*s85, 1)` where the known entry's read `(8, 2, 4, 1)`."""
    concrete = ValueError("Cannot view a tensor with shape torch.Size([2, 2, 2, 2]) and "
                          "strides (8, 2, 4, 1) as a tensor with shape (-1, 2, 2)!")
    symbolic = ValueError("Cannot view a tensor with shape torch.Size([((s85**2)//s85), s85, "
                          "s0, s0]) and strides (s0**2*s85, s0, s0*s85, 1) as a tensor with "
                          "shape (s85*(((s85**2)//s85)), s0, s0)!")
    assert message_class(symbolic) == message_class(concrete) == \
        "cannot view a tensor with shape s and strides s as a tensor with shape s!"
    assert message_class(RuntimeError("view size is not compatible (at least one dimension "
                                      "spans across two subspaces)")).endswith("subspaces)")
    # A call's empty parentheses are no sizes: finding 14's key reads them.
    assert message_class(RuntimeError(
        "aten::scaled_dot_product_attention() Expected a value of type 'Optional[float]' for "
        "argument 'scale' but instead found type 'FakeTensor'.")).startswith(
        "aten::scaled_dot_product_attention() expected")
