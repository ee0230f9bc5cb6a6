"""A repro script runs the fuzzer's own code: the carried modules must stand alone in order."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import Counter

from fuzz.carry import CARRIED, carried_source
from fuzz.case import Attention, Case, CompileSpec, Program
from fuzz.codegen import repro_script
from tests.test_minimal import CASE


def _top_level_names(source: str) -> list[str]:
    names = []
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def test_each_carried_module_imports_only_carried_modules_before_it() -> None:
    seen = {"fuzz.kernels"}  # FUSED, which the script defines first
    for module in CARRIED:
        tree = ast.parse(open(module.__file__).read())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                    and (node.module or "").startswith("fuzz")}
        assert imported <= seen, f"{module.__name__} imports {imported - seen}"
        seen.add(module.__name__)


def test_carried_modules_define_each_name_once() -> None:
    """Concatenated, a second definition would silently replace the first."""
    counts = Counter(_top_level_names(carried_source()))
    assert [name for name, n in counts.items() if n > 1] == []


def test_a_full_repro_with_backward_runs_alone_and_passes_on_eager(tmp_path) -> None:
    """The script runs the reference's backward under `fuzz.terms`: a carried module that
    uses a module it does not carry fails only here, as a NameError in a user's hands."""
    script = tmp_path / "repro.py"
    script.write_text(repro_script(CASE, "eager"))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]


def test_a_full_repro_keeps_inductor_s_mode(tmp_path) -> None:
    """torch.compile hands a callable backend its `mode`, which the counter in front of
    Inductor refused: every full repro of a case compiled with a mode raised TypeError."""
    case = Case(inputs=CASE.inputs[:3], program=Program((Attention("out"),), ("out",)),
                compile=CompileSpec(backend="inductor", mode="max-autotune-no-cudagraphs"))
    script = tmp_path / "repro.py"
    script.write_text(repro_script(case, "inductor"))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0 and "Traceback" not in result.stderr, \
        result.stdout[-2000:] + result.stderr[-2000:]
