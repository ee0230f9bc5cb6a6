"""The property users run to find and shrink divergences, as the plugin packages it
(fuzz/properties.py): compiled SDPA behaves as eager.

    pytest tests/test_property.py --backend inductor
    HYPOTHESIS_PROFILE=fuzz pytest tests/test_property.py --backend mypkg.mod:my_backend

From another folder, with sdpa-fuzz installed: `pytest --sdpa-fuzz-backend B`.
"""

from __future__ import annotations

from fuzz.properties import (SEEDS, test_compiled_attention_module_matches_eager,
                             test_compiled_hand_written_attention_matches_eager,
                             test_compiled_model_attention_layer_matches_eager,
                             test_compiled_sdpa_matches_eager)

__all__ = ["test_compiled_sdpa_matches_eager",
           "test_compiled_hand_written_attention_matches_eager",
           "test_compiled_model_attention_layer_matches_eager",
           "test_compiled_attention_module_matches_eager"]


def test_the_seed_scenarios_are_examples() -> None:
    assert len(SEEDS) == 6
