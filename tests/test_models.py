"""Attention layers as models write them (`strategies.models`): faults that only they reach
are caught, and shrunk to their condition with the model form kept.

The clean runs of this space are in tests/test_property.py, with the other spaces.
"""

from __future__ import annotations

import pytest

from strategies import model_attention_cases
from tests import faults
from tests.test_faults import minimal_exit, shrunk_failure


@pytest.mark.parametrize("fault", sorted(faults.MODEL_CONDITIONS))
def test_a_fault_only_model_layers_reach_is_caught_and_shrunk(fault: str) -> None:
    """Self-attention on one aliased tensor, and a decode step against a cache of 256
    keys or more: neither is drawn by the space of SDPA calls on inputs."""
    backend = f"tests.faults:{fault}"
    case, verdict = shrunk_failure(backend, model_attention_cases(backend))
    assert faults.MODEL_CONDITIONS[fault](case), f"{fault}: condition lost:\n{case}"
    assert minimal_exit(case, verdict, backend) == 1, verdict.explain()
