"""Hypothesis strategies for sdpa-fuzz cases. Generation only: nothing here runs a case."""

from strategies.cases import cases

__all__ = ["cases"]
