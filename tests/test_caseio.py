"""The Case's JSON form: exact round trips, and clear refusals of anything else."""

from __future__ import annotations

import json

import pytest
from hypothesis import given

from fuzz.case import SCHEMA_VERSION, Attention, Case, CaseError, Program, TensorSpec
from fuzz.caseio import case_from_json, case_to_dict, case_to_json, load_case
from strategies import cases


@given(cases())
def test_json_round_trip_is_exact(case: Case) -> None:
    text = case_to_json(case)
    # repr, not ==: a NaN scale is not equal to itself, and its repr is exact
    assert repr(case_from_json(text)) == repr(case)
    assert case_to_json(case_from_json(text)) == text


def _doc(case: Case) -> dict:
    return json.loads(case_to_json(case))


SIMPLE = Case(inputs=(("q", TensorSpec((2, 3, 4))), ("k", TensorSpec((2, 5, 4))),
                      ("v", TensorSpec((2, 5, 4)))),
              program=Program((Attention(out="out"),), ("out",)))


def test_every_file_carries_the_schema_version() -> None:
    assert case_to_dict(SIMPLE)["schema"] == SCHEMA_VERSION


def test_newer_schema_is_refused_naming_the_version() -> None:
    doc = _doc(SIMPLE)
    doc["schema"] = SCHEMA_VERSION + 1
    with pytest.raises(CaseError, match=f"schema {SCHEMA_VERSION + 1}, newer"):
        case_from_json(json.dumps(doc), "x.json")


@pytest.mark.parametrize("mangle, message", [
    (lambda d: d.pop("format"), "not an sdpa-fuzz case"),
    (lambda d: d.update(schema="1"), "schema version is missing or not an integer"),
    (lambda d: d["case"]["inputs"]["q"].update(dtype="float8"), "dtype 'float8'"),
    (lambda d: d["case"]["inputs"]["q"].update(shape=[2, -1, 4]), "every dim must be"),
    (lambda d: d["case"]["inputs"]["q"].update(layout="diagonal"), "layout 'diagonal'"),
    (lambda d: d["case"]["inputs"]["q"].update(colour="red"), "unknown field"),
    (lambda d: d["case"]["inputs"]["q"].update(seed=-1), "seed must be"),
    (lambda d: d["case"]["inputs"]["q"].update(shape="big"), "expected a list"),
    (lambda d: d["case"]["program"]["body"][0].update(op="teleport"), "unknown statement op"),
    (lambda d: d["case"]["program"]["body"][0].update(key="nope"), "'nope', which is not"),
    (lambda d: d["case"]["program"]["body"][0].update(dropout_p=2.5), "dropout_p 2.5"),
    (lambda d: d["case"]["program"].update(returns=["ghost"]), "never defines"),
    (lambda d: d["case"].update(device="tpu"), "device 'tpu'"),
])
def test_malformed_cases_are_refused_with_a_reason(mangle, message: str) -> None:
    doc = _doc(SIMPLE)
    mangle(doc)
    with pytest.raises(CaseError, match=message):
        case_from_json(json.dumps(doc), "bad.json")


def test_unreadable_file_names_the_file(tmp_path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"format": "sdpa-fuzz-case", "schema": 1, "case": {')
    with pytest.raises(CaseError, match="broken.json: not valid JSON"):
        load_case(path)
