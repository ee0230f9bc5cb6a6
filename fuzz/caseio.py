"""The JSON form of a Case: exact round trip, strict decoding, a schema version in every file.

Decoding refuses anything it does not fully understand (unknown keys, wrong types, a newer
schema) with a `CaseError` that says what and where, because a case silently read wrong is
a false report waiting to happen.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any

from fuzz.case import (SCHEMA_VERSION, STATEMENTS, CallContext, Case, CaseError, CompileSpec,
                       ModuleInput, ParamsInput, Program, TensorSpec)

FORMAT = "sdpa-fuzz-case"


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        out = {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if type(value) in STATEMENTS.values():
            return {"op": _op_name(type(value)), **out}
        return out
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    return value


def _op_name(cls: type) -> str:
    return next(name for name, c in STATEMENTS.items() if c is cls)


def case_to_dict(case: Case) -> dict:
    body = _encode(case)
    body["inputs"] = {name: _encode(spec) for name, spec in case.inputs}
    return {"format": FORMAT, "schema": SCHEMA_VERSION, "case": body}


def case_to_json(case: Case) -> str:
    return json.dumps(case_to_dict(case), indent=1, sort_keys=False)


def _decode_value(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _decode_value(option, value, where)
            except CaseError as exc:
                errors.append(str(exc))
        raise CaseError(errors[0] if errors else f"{where}: unexpected null")
    if origin is tuple:
        if not isinstance(value, list):
            raise CaseError(f"{where}: expected a list, got {type(value).__name__}")
        (item, *rest) = typing.get_args(tp)
        return tuple(_decode_value(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        return _decode_dataclass(tp, value, where)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CaseError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise CaseError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp in (bool, str):
        if not isinstance(value, tp):
            raise CaseError(f"{where}: expected {tp.__name__}, got {value!r}")
        return value
    raise CaseError(f"{where}: cannot decode type {tp!r}")


def _decode_dataclass(cls: type, value: Any, where: str) -> Any:
    if not isinstance(value, dict):
        raise CaseError(f"{where}: expected an object, got {type(value).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(value) - set(fields)
    if unknown:
        raise CaseError(f"{where}: unknown field(s) {sorted(unknown)}")
    kwargs = {}
    for name, f in fields.items():
        if name not in value:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise CaseError(f"{where}: missing field {name!r}")
            continue
        if name == "body":
            kwargs[name] = _decode_statements(value[name], f"{where}.body")
        else:
            kwargs[name] = _decode_value(hints[name], value[name], f"{where}.{name}")
    try:
        return cls(**kwargs)
    except CaseError as exc:
        raise CaseError(f"{where}: {exc}") from None


def _decode_statements(value: Any, where: str) -> tuple:
    if not isinstance(value, list):
        raise CaseError(f"{where}: expected a list of statements")
    return tuple(_decode_statement(v, f"{where}[{i}]") for i, v in enumerate(value))


def _decode_statement(value: Any, where: str) -> Any:
    if not isinstance(value, dict) or "op" not in value:
        raise CaseError(f"{where}: a statement must be an object with an 'op'")
    rest = dict(value)
    op = rest.pop("op")
    if op not in STATEMENTS:
        raise CaseError(f"{where}: unknown statement op {op!r}; known: {sorted(STATEMENTS)}")
    return _decode_dataclass(STATEMENTS[op], rest, where)


def case_from_dict(data: Any, source: str = "<case>") -> Case:
    """Decode a Case, refusing foreign, newer-schema and malformed documents by name."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CaseError(f"{source}: not an sdpa-fuzz case (no \"format\": \"{FORMAT}\")")
    schema = data.get("schema")
    if not isinstance(schema, int) or isinstance(schema, bool):
        raise CaseError(f"{source}: the schema version is missing or not an integer")
    if schema > SCHEMA_VERSION:
        raise CaseError(f"{source}: written by schema {schema}, newer than this sdpa-fuzz "
                        f"(reads up to {SCHEMA_VERSION}); upgrade sdpa-fuzz to replay it")
    if schema < 1:
        raise CaseError(f"{source}: unknown schema version {schema}")
    body = data.get("case")
    if not isinstance(body, dict):
        raise CaseError(f"{source}: no \"case\" object")
    body = dict(body)
    inputs = body.get("inputs")
    if not isinstance(inputs, dict):
        raise CaseError(f"{source}: case.inputs must be an object of name -> tensor spec")
    body["inputs"] = [[name, spec] for name, spec in inputs.items()]
    try:
        return _decode_case(body, source)
    except CaseError as exc:
        message = str(exc)
        raise CaseError(message if message.startswith(source) else f"{source}: {message}") from None


def _decode_case(body: dict, source: str) -> Case:
    pairs = body.pop("inputs")
    decoded_inputs = []
    for name, spec in pairs:
        keys = spec if isinstance(spec, dict) else {}
        kind = TensorSpec if "shape" in keys else ModuleInput if "module" in keys else ParamsInput
        decoded_inputs.append((name, _decode_dataclass(kind, spec, f"inputs.{name}")))
    allowed = {"program", "compile", "device", "calls", "backward"}
    unknown = set(body) - allowed
    if unknown:
        raise CaseError(f"case: unknown field(s) {sorted(unknown)}")
    if "program" not in body:
        raise CaseError("case: missing field 'program'")
    program = _decode_dataclass(Program, body["program"], "program")
    compile_spec = _decode_dataclass(CompileSpec, body.get("compile", {}), "compile")
    device = _decode_value(str, body.get("device", "cpu"), "device")
    calls = _decode_value(tuple[CallContext, ...], body.get("calls", [{}]), "calls")
    backward = _decode_value(bool, body.get("backward", False), "backward")
    return Case(inputs=tuple(decoded_inputs), program=program, compile=compile_spec,
                device=device, calls=calls, backward=backward)


def case_from_json(text: str, source: str = "<case>") -> Case:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CaseError(f"{source}: not valid JSON ({exc})") from None
    return case_from_dict(data, source)


def load_case(path: str | Path) -> Case:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseError(f"{path}: cannot read ({exc})") from None
    return case_from_json(text, str(path))
