"""The property users run to find and shrink divergences: compiled SDPA behaves as eager.

    pytest tests/test_property.py --backend inductor
    HYPOTHESIS_PROFILE=fuzz pytest tests/test_property.py --backend mypkg.mod:my_backend

On failure Hypothesis prints the minimal case; this test adds its JSON and repro script.
A failure that a known bug of the committed corpus covers (docs/findings.md; the same
rule as `sdpa-fuzz run --known corpus`, see fuzz/identity.py) does not fail it: it is a
torch bug already on record, and the search should look past it. The six
scenarios of PyTorch's test/dynamo/test_sdpa.py (corpus/seed-*.json) run first, as
explicit examples.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from pathlib import Path

from hypothesis import example, given, note, settings

from fuzz.caseio import case_to_json
from fuzz.backends import declared_layers
from fuzz.corpus import known_bugs, load_entry
from fuzz.execute import run_case
from fuzz.identity import backend_layers, features
from fuzz.minimal import minimal_script, target_of
from fuzz.oracle import judge
from strategies import cases, hand_attention_cases, model_attention_cases

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
SEEDS = [load_entry(path).case for path in sorted(CORPUS.glob("seed-*.json"))]


@cache
def known(backend: str):
    return known_bugs(CORPUS, backend, backend_layers(backend, declared_layers(backend)))


def check(case, backend: str) -> None:
    case = replace(case, compile=replace(case.compile, backend=backend))
    verdict = judge(case, run_case(case, backend))
    found = features(case)
    new = [f for f in verdict.failures
           if not any(b.identity.covers(f.key, found) for b in known(backend))]
    if new:
        note(f"case JSON (`sdpa-fuzz repro --full` on it gives the full checker):\n"
             f"{case_to_json(case)}")
        note(f"minimal repro:\n{minimal_script(case, target_of(new[0], verdict.bounds), backend)}")
    assert not new, verdict.explain()


def with_seed_examples(test):
    for seed_case in SEEDS:
        test = example(case=seed_case)(test)
    return test


@with_seed_examples
@given(case=cases())
def test_compiled_sdpa_matches_eager(backend: str, case) -> None:
    check(case, backend)


@given(case=hand_attention_cases())
def test_compiled_hand_written_attention_matches_eager(backend: str, case) -> None:
    """Attention written out by hand, which Inductor may rewrite into SDPA."""
    check(case, backend)


@settings(max_examples=max(1, settings.default.max_examples // 4))
@given(case=model_attention_cases())
def test_compiled_model_attention_layer_matches_eager(backend: str, case) -> None:
    """SDPA fed as models feed it: projections, fused qkv views, rotary embeddings, a KV
    cache, merged heads. A quarter of the profile's examples: each compiles a whole layer,
    and the space has its own fault tests (tests/test_models.py)."""
    check(case, backend)


def test_the_seed_scenarios_are_examples() -> None:
    assert len(SEEDS) == 6
