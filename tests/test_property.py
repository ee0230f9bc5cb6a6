"""The property users run to find and shrink divergences: compiled SDPA behaves as eager.

    pytest tests/test_property.py --backend inductor
    HYPOTHESIS_PROFILE=fuzz pytest tests/test_property.py --backend mypkg.mod:my_backend

On failure Hypothesis prints the minimal case; this test adds its JSON and repro script.
Signatures of the committed corpus's known failures (docs/findings.md) do not fail it:
they are torch bugs already on record, and the search should look past them.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, note
from hypothesis import strategies as st

from fuzz.caseio import case_to_json
from fuzz.codegen import repro_script
from fuzz.corpus import known_signatures
from fuzz.execute import run_case
from fuzz.oracle import judge
from fuzz.tolerance import table
from strategies import cases


KNOWN = known_signatures(Path(__file__).resolve().parent.parent / "corpus")


def check(case, backend: str) -> None:
    verdict = judge(case, run_case(case, backend))
    new = [f for f in verdict.failures if f.signature not in KNOWN]
    if new:
        note(f"case JSON:\n{case_to_json(case)}")
        note(f"repro script:\n{repro_script(case, backend, table())}")
    assert not new, verdict.explain()


@given(data=st.data())
def test_compiled_sdpa_matches_eager(backend: str, data: st.DataObject) -> None:
    check(data.draw(cases(backend)), backend)
