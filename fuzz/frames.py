"""The frame model: how many graphs Dynamo must hand the backend for a program.

A pure function of the program. Its rules, and the Dynamo behaviour behind each, are in
docs/oracle.md; tests/test_frames.py pins every rule to a program observed on torch 2.13.
"""

from __future__ import annotations

from fuzz.case import Program


def predict_frames(program: Program) -> int:
    """Graphs compiled by the first call.

    Rule 1: a program with no graph break is one frame, traced whole into one graph,
    and every statement the grammar has puts at least one op into it.
    """
    return 1 if program.body else 0
