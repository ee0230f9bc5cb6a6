"""Minimal repro scripts: every check renders as valid Python that needs only torch.

What each script shows is tested where it runs: the committed corpus's scripts
(`test_replay`), a fault run's finding (`test_cli`), and `benchmarks/detection.py`, whose
findings are confirmed only if their minimal script exits 1 by its own check."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from fuzz.case import (Attention, BuildParams, CallContext, Case, CompileSpec, ParamsInput,
                       Program, TensorSpec)
from fuzz.minimal import Target, minimal_script

CASE = Case(
    inputs=(("q", TensorSpec((1, 2, 3, 4), "bfloat16", layout="transposed", seed=1,
                             requires_grad=True)),
            ("k", TensorSpec((1, 2, 5, 4), "bfloat16", layout="offset", seed=2)),
            ("v", TensorSpec((1, 2, 5, 4), "bfloat16", layout="strided", seed=3)),
            ("mask", TensorSpec((1, 1, 3, 5), "float32", values="full_rows", seed=4)),
            ("p", ParamsInput(mask="mask"))),
    program=Program((Attention("out", mask="mask", dropout_p=0.5),), ("out", "p")),
    compile=CompileSpec(backend="inductor", dynamic=True, mark_dynamic=True),
    calls=(CallContext(), CallContext(("MATH",), grow=2, reseed=1)), backward=True)

TARGETS = [
    Target("values", "attention", "bfloat16", "out", fudge=3.0, floor=1e-3),
    Target("values", "grad-q", "bfloat16", "grad-q", 1, fudge=8.0, floor=1e-3),
    Target("values", "input", "bfloat16", "out"),
    Target("values", "input", "bool", "p.is_causal"),
    Target("nan-inf", "attention", "bfloat16", "out"),
    Target("metadata", "attention", "bfloat16", "out"),
    Target("stride", "attention", "bfloat16", "out"),
    Target("outcome", "call", "eager-raised-RuntimeError", call=1),
    Target("outcome", "backward", "RuntimeError-vs-internal-AssertionError"),
    Target("structure", "return", "pytree"),
    Target("structure", "input.attn_mask", "none", "p.attn_mask"),
    Target("structure", "grad-k", "none", "grad-k"),
    Target("identity", "input", "returns-q", "out"),
    Target("mutation", "input", "bfloat16", "q"),
    Target("mutation", "input-storage", "bfloat16", "k"),
    Target("backend-state", "after-call", "priority", call=1),
    Target("frames", "first-call", "expected-1"),
    Target("recompile", "call", "size-dynamic", call=1),
    Target("recompile", "repeat", "equal-inputs"),
    Target("fullgraph", "call", "breaking-program"),
    Target("crash", "worker", "SIGSEGV"),
    Target("timeout", "worker", "hang"),
]


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: f"{t.check}:{t.where}")
def test_every_check_renders_as_a_torch_only_script(target: Target) -> None:
    source = minimal_script(CASE, target, "inductor")
    tree = ast.parse(source)
    imported = {a.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, (ast.Import, ast.ImportFrom))
                for a in (node.names if isinstance(node, ast.Import) else
                          [type("A", (), {"name": node.module})()])}
    assert imported <= {"torch", "contextlib", "sys", "os"}, imported
    assert source.rstrip().splitlines()[-1].startswith(("raise SystemExit(", "print("))
    assert Target.from_dict(target.to_dict()) == target


def test_the_case_is_valid() -> None:
    CASE.validate()


# (the frame model has no count for SDPAParams inputs, and the size rules none for a call
# in another context, so neither a `frames` nor a `recompile:call` failure is drawn here)
@pytest.mark.parametrize("target", [t for t in TARGETS if t.check not in (
    "crash", "timeout", "fullgraph", "outcome", "identity", "structure", "frames")
    and t.where != "call"],
    ids=lambda t: f"{t.check}:{t.where}:{t.subject}")
def test_a_script_passes_on_a_clean_backend(target: Target) -> None:
    """Run as a user runs it, against `eager`, every script exits 0: its calls, seeding,
    contexts, gradients and bound agree with what the fuzzer judged a clean run to be."""
    source = minimal_script(CASE, target, "eager")
    with pytest.raises(SystemExit) as exited:
        exec(compile(source, "<minimal>", "exec"), {"__name__": "__main__"})
    assert not exited.value.code, source


def test_a_frame_count_script_runs_in_a_fresh_process(tmp_path) -> None:
    """As confirmation and a maintainer run it: in a process of its own, where only what
    the script imports is imported (`torch._dynamo.testing` is not imported by `import
    torch`; every frames and recompile finding was quarantined for it)."""
    script = tmp_path / "repro.py"
    script.write_text(minimal_script(CASE, Target("recompile", "repeat", "equal-inputs"),
                                     "eager"))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]


def test_a_call_context_is_imported_where_the_function_makes_no_sdpa_call() -> None:
    """A function that only builds SDPAParams, called inside `sdpa_kernel`: the script
    imports `sdpa_kernel` though it drops the unused `F` (a fault's shrunk case once ran
    into a NameError there)."""
    case = Case(inputs=CASE.inputs[:3], program=Program((BuildParams("p"),), ("p",)),
                calls=(CallContext(("MATH",)),))
    case.validate()
    source = minimal_script(case, Target("values", "input", "bool", "p.is_causal"), "eager")
    assert "F." not in source and "import torch.nn.functional" not in source
    with pytest.raises(SystemExit) as exited:
        exec(compile(source, "<minimal>", "exec"), {"__name__": "__main__"})
    assert not exited.value.code, source


def test_an_earlier_call_that_raises_in_eager_too_does_not_stop_the_script() -> None:
    """A call under `sdpa_kernel` of a kernel the CPU lacks raises in eager and compiled
    alike, and the fuzzer's run goes on to the next call: so must the script, to show a
    divergence of a later call (a CI run's stale-outputs script died on the first call)."""
    qkv = tuple((n, TensorSpec((1, 2, 3, 4), seed=i)) for i, n in enumerate("qkv"))
    case = Case(qkv, Program((Attention("out"),), ("out",)),
                compile=CompileSpec(backend="tests.faults:stale_outputs"),
                calls=(CallContext(("EFFICIENT_ATTENTION",)), CallContext(reseed=1),
                       CallContext(reseed=2)))
    source = minimal_script(case, Target("values", "attention", "float32", "out", call=2,
                                         fudge=3.0, floor=1e-6), "tests.faults:stale_outputs")
    with pytest.raises(SystemExit) as exited:
        exec(compile(source, "<minimal>", "exec"), {"__name__": "__main__"})
    assert exited.value.code, source
