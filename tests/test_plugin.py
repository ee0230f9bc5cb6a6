"""The pytest plugin as a backend author meets it: sdpa-fuzz installed from a wheel into a
fresh venv, pytest run in an empty folder with only `--sdpa-fuzz-backend`.

The fresh venv reaches torch, Hypothesis and pytest through a .pth file naming this
interpreter's site-packages (installing torch again would cost a minute of CI), whose
editable link to this checkout is not active there: `fuzz` comes from the wheel.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.xdist_group("plugin")

USER_BACKENDS = '''
import ctypes

import torch.nn.functional as F


def _sdpa_off(*args, **kwargs):
    return F.scaled_dot_product_attention(*args, **kwargs) * 1.01


def sdpa_one_percent_off(gm, example_inputs):
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target is F.scaled_dot_product_attention:
            node.target = _sdpa_off
    gm.recompile()
    return gm.forward


def segfaults_on_sdpa_params(gm, example_inputs):
    if any("SDPAParams" in str(node.target) for node in gm.graph.nodes):
        ctypes.string_at(0)
    return gm.forward
'''


@pytest.fixture(scope="module")
def fresh_python(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("plugin")
    source = root / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", ".hypothesis", "fuzz-out", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(root / "wheels"), str(source)],
                   check=True, capture_output=True)
    venv.create(root / "venv", with_pip=True)
    python = root / "venv" / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                              "['purelib'])"], check=True, capture_output=True,
                             text=True).stdout.strip()
    Path(purelib, "zz_host.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    (wheel,) = (root / "wheels").glob("sdpa_fuzz-*.whl")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
                   check=True, capture_output=True)
    return python


def pytest_in_empty_folder(python: Path, folder: Path, *args: str
                           ) -> subprocess.CompletedProcess:
    folder.mkdir()
    (folder / "userbackends.py").write_text(USER_BACKENDS)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    return subprocess.run([python, "-m", "pytest", "-p", "no:cacheprovider", "-rA", *args],
                          cwd=folder, env={**env, "HYPOTHESIS_PROFILE": "ci"},
                          capture_output=True, text=True, timeout=900)


def outcomes(output: str) -> dict[str, str]:
    return dict((m[2], m[1]) for m in re.finditer(r"^(PASSED|FAILED|SKIPPED) (\S+)", output,
                                                  re.M))


def test_the_plugin_finds_a_fault_passes_where_it_does_not_reach_and_survives_a_segfault(
        fresh_python: Path, tmp_path: Path) -> None:
    """Each fault fails the properties it reaches and passes the others: those passes are
    the clean runs (`eager` itself is the suite's own property test, tests/test_property.py).
    The segfault is on an SDPAParams object in the graph, which the seed scenarios (the
    SDPA property's explicit examples) build: Hypothesis reports a failing explicit example
    as it is. Every shrink step of a crash costs a worker, and shrinking one on a masked
    softmax took 100 of the test's 170 s."""
    run = pytest_in_empty_folder(
        fresh_python, tmp_path / "empty",
        "--sdpa-fuzz-backend", "userbackends:sdpa_one_percent_off",
        "--sdpa-fuzz-backend", "userbackends:segfaults_on_sdpa_params",
        "--hypothesis-show-statistics")
    text = run.stdout + run.stderr
    got = outcomes(text)
    failed = {name for name, outcome in got.items() if outcome == "FAILED"}
    assert failed == {
        "::test_compiled_sdpa_matches_eager[userbackends:sdpa_one_percent_off]",
        "::test_compiled_model_attention_layer_matches_eager[userbackends:sdpa_one_percent_off]",
        "::test_compiled_sdpa_matches_eager[userbackends:segfaults_on_sdpa_params]",
    }, text[-4000:]
    assert len(got) == 8 and run.returncode == 1, text[-4000:]  # 4 properties x 2 backends
    assert "[crash:worker:SIGSEGV]" in text and "minimal repro:" in text
    assert str(fresh_python.parent.parent) in text  # fuzz ran from the wheel, not the checkout
    # Search feedback: each case's areas are Hypothesis events, its error ratio a target.
    assert re.search(r"\d+\.\d+%, statement:module_call", text), text[-4000:]
    assert "worst compiled/eager error ratio" in text, text[-4000:]


def test_the_plugin_replays_its_packaged_corpus(fresh_python: Path, tmp_path: Path) -> None:
    """Every committed entry is packaged and collected; those of three kinds replay (all of
    them replay in tests/test_replay.py, from the checkout: 44 s here)."""
    run = pytest_in_empty_folder(fresh_python, tmp_path / "empty", "--sdpa-fuzz-backend",
                                 "eager", "--sdpa-fuzz-replay", "-k",
                                 "packaged and (error-parity or bool-mask or known-aot)")
    text = run.stdout + run.stderr
    passed = sum(o == "PASSED" for o in outcomes(text).values())
    assert run.returncode == 0 and passed >= 4, text[-4000:]
    deselected = int(re.search(r"(\d+) deselected", text)[1])
    properties = 4
    assert passed + deselected == len(list((REPO / "corpus").glob("*.json"))) + properties, \
        text[-4000:]


def test_without_its_option_the_plugin_collects_nothing_and_imports_no_torch(
        fresh_python: Path, tmp_path: Path) -> None:
    run = pytest_in_empty_folder(fresh_python, tmp_path / "empty")
    assert run.returncode == 5, run.stdout  # pytest's "no tests collected"
    probe = subprocess.run([fresh_python, "-c", "import sys, fuzz.plugin; "
                            "print(fuzz.plugin.__file__, 'torch' in sys.modules)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True)
    path, torch_imported = probe.stdout.split()
    assert torch_imported == "False" and str(fresh_python.parent.parent) in path
