"""Hypothesis strategies for sdpa-fuzz cases. Generation only: nothing here runs a case."""

from hypothesis import strategies as st

from strategies.cases import cases, plain_cases
from strategies.handwritten import hand_attention_cases
from strategies.models import model_attention_cases
from strategies.modules import module_cases

SPACES = ("all", "sdpa", "handwritten", "models", "modules")


PLAIN_SPACES = ("all", "sdpa")  # the spaces whose searches start with plain SDPA calls


def space(name: str, backend: str, device: str = "cpu", plain: bool = False
          ) -> st.SearchStrategy:
    """The cases of one search space: programs around SDPA calls (`sdpa`), hand-written
    attention for Inductor's rewrite (`handwritten`), attention layers as models write
    them (`models`), torch.nn's attention modules (`modules`), or any (`all`). `plain`:
    only its plain SDPA calls (`plain_cases`), for a space in PLAIN_SPACES."""
    if plain:
        assert name in PLAIN_SPACES, name
        return plain_cases(backend, device)
    spaces = {"sdpa": cases(backend, device), "handwritten": hand_attention_cases(backend, device),
              "models": model_attention_cases(backend, device),
              "modules": module_cases(backend, device)}
    return st.one_of(*spaces.values()) if name == "all" else spaces[name]


__all__ = ["PLAIN_SPACES", "SPACES", "cases", "plain_cases", "hand_attention_cases", "model_attention_cases", "module_cases",
           "space"]
