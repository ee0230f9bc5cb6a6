"""The packaged properties: a program calling SDPA behaves the same compiled as eager.

Collected by the pytest plugin (`pytest --sdpa-fuzz-backend B`, from any folder) and by
this repo's tests/test_property.py. The `sdpa_fuzz_backend` parameter comes from
`--sdpa-fuzz-backend` (the plugin) or `--backend` (this repo's conftest). Each case runs in
a worker process (`fuzz.api.check_case`), so a backend's segfault or hang fails the test
with its case and the session goes on. On failure Hypothesis prints the minimal case; the
error carries its JSON and minimal repro. A failure a known bug of the packaged corpus
covers does not fail the test. PyTorch's six test_sdpa.py scenarios (corpus/seed-*.json)
run first, as explicit examples.
"""

from __future__ import annotations

from hypothesis import example, given, settings

from fuzz.api import (cases, check_case, hand_attention_cases, model_attention_cases,
                      module_cases)
from fuzz.corpus import load_entry, packaged_corpus

SEEDS = [load_entry(path).case for path in sorted(packaged_corpus().glob("seed-*.json"))]


def with_seed_examples(test):
    for seed_case in SEEDS:
        test = example(case=seed_case)(test)
    return test


@with_seed_examples
@given(case=cases())
def test_compiled_sdpa_matches_eager(sdpa_fuzz_backend: str, sdpa_fuzz_case_timeout: float,
                                     case) -> None:
    check_case(case, sdpa_fuzz_backend, sdpa_fuzz_case_timeout)


@given(case=hand_attention_cases())
def test_compiled_hand_written_attention_matches_eager(
        sdpa_fuzz_backend: str, sdpa_fuzz_case_timeout: float, case) -> None:
    """Attention written out by hand, which Inductor may rewrite into SDPA."""
    check_case(case, sdpa_fuzz_backend, sdpa_fuzz_case_timeout)


@settings(max_examples=max(1, settings.default.max_examples // 4))
@given(case=model_attention_cases())
def test_compiled_model_attention_layer_matches_eager(
        sdpa_fuzz_backend: str, sdpa_fuzz_case_timeout: float, case) -> None:
    """SDPA fed as models feed it: projections, fused qkv views, rotary embeddings, a KV
    cache, merged heads. A quarter of the profile's examples: each compiles a whole layer."""
    check_case(case, sdpa_fuzz_backend, sdpa_fuzz_case_timeout)


@settings(max_examples=max(1, settings.default.max_examples // 4))
@given(case=module_cases())
def test_compiled_attention_module_matches_eager(
        sdpa_fuzz_backend: str, sdpa_fuzz_case_timeout: float, case) -> None:
    """nn.MultiheadAttention and nn.TransformerEncoderLayer with seeded weights, called as
    a model calls them, gradients reaching the weights. A quarter of the profile's
    examples: each compiles a whole module."""
    check_case(case, sdpa_fuzz_backend, sdpa_fuzz_case_timeout)
