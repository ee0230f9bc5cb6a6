"""Which of Inductor's attention rewrites fired while a case compiled, and by what family.

Inductor's `fuse_attention` pass replaces hand-written attention with an SDPA call. With
`TORCHINDUCTOR_PATTERN_MATCH_DEBUG` set, its pattern matcher counts each applied pattern
by name (`counters["inductor_pattern_matcher_per_pattern"]["_sfdp_pattern_1_inference"]`),
which says which replacement fired, not only that one did. The value set here names no
graph node, so it turns on the counting and nothing else.

AOTAutograd's cache is turned off while a program with hand-written attention compiles:
a hit there skips the joint-graph passes, `fuse_attention` among them, and does not
restore their counters, so a cached program would look unrewritten. The FX graph cache
stays on: its lookup comes after those passes, so the counts stay honest on a hit.
"""

from __future__ import annotations

import os
from collections import Counter

import torch
import torch._functorch.config
from torch._dynamo.utils import counters

from fuzz.case import Case, HandAttention, walk

PER_PATTERN = "inductor_pattern_matcher_per_pattern"
PREFIX = "_sfdp_pattern_"
# Every replacement of fuse_attention counts itself here, whatever the debug setting: the
# fallback where no per-pattern count was kept (seen on torch 2.11 with CUDA, where output
# strides and fully masked rows showed SDPA's behaviour but no pattern was counted).
UNNAMED = "fuse_attention"


def hand_attentions(case: Case) -> list[HandAttention]:
    return [s for s in walk(case.program.body) if isinstance(s, HandAttention)]


def prepare(case: Case) -> None:
    """Make the next compile count its rewrites honestly (see the module docstring)."""
    os.environ["TORCHINDUCTOR_PATTERN_MATCH_DEBUG"] = "sdpa-fuzz,count-only"
    torch._functorch.config.enable_autograd_cache = not hand_attentions(case)


def snapshot() -> Counter:
    named = Counter({k: v for k, v in counters[PER_PATTERN].items() if k.startswith(PREFIX)})
    return named + Counter({UNNAMED: counters["inductor"][UNNAMED]})


def fired(before: Counter, after: Counter) -> tuple[str, ...]:
    """Patterns applied between two snapshots, by their registered names; `fuse_attention`
    alone when replacements happened but none was counted by name."""
    grew = sorted(k for k in after if after[k] > before.get(k, 0))
    named = tuple(k for k in grew if k != UNNAMED)
    return named or tuple(grew)


def short(pattern: str) -> str:
    """`_sfdp_pattern_11_half_training` -> `sfdp11`: the replacement, whatever dtype or
    mode variant of it was traced; `sfdp` for an unnamed one."""
    return "sfdp" + (pattern.removeprefix(PREFIX).split("_")[0] if pattern != UNNAMED else "")


def families(case: Case) -> tuple[str, ...]:
    """The pattern families of the case's hand-written attention, for coverage counts:
    one label per structural choice (`matmul:bmm`, `mask:where`, `causal:tril`, ...)."""
    labels: list[str] = []
    for a in hand_attentions(case):
        scale = {"div": "divide", "mul": "multiply", "query_div": "query-first",
                 "query_mul": "query-first", "none": "none"}[a.scale_op]
        labels += ["all", f"matmul:{a.matmul}", f"layout:{a.layout}", f"scale:{scale}",
                   f"scale-type:{a.scale_type}", f"mask:{a.mask_op}", f"causal:{a.causal}",
                   f"softmax-cast:{'yes' if a.upcast != 'none' or a.cast_back != 'none' else 'no'}",
                   f"dropout:{a.dropout}", f"softmax-dim:{a.softmax_dim}",
                   f"canonical:{'yes' if not a.deviations() else 'no'}"]
        if a.mask is not None:
            labels.append(f"mask-dtype:{case.spec(a.mask).dtype}")
        if {a.key, a.value} <= set(case.program.returns):
            labels.append("returns:key-value")
        labels.append("grad:" + ("yes" if case.spec(a.query).requires_grad else "no"))
    return tuple(dict.fromkeys(labels))
