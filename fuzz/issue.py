"""A finding as a ready issue for pytorch/pytorch: title, the minimal repro, expected
against actual, what the fuzzer checked, and the environment as PyTorch's torch.compile
bug template asks for it (`python -m torch.utils.collect_env`).
"""

from __future__ import annotations

import functools
from typing import Any

from fuzz.minimal import Target, title


# What eager's behaviour requires of compiled code, by the check that failed.
EXPECTED = {
    "values": "compiled values within a small multiple of eager's own error, both measured "
              "against a float64 run of the same program (docs/oracle.md in sdpa-fuzz).",
    "nan-inf": "NaN and infinity where eager has them, and nowhere else.",
    "outcome": "compiled raises where eager raises, an exception of the same type, and "
               "succeeds where eager succeeds.",
    "mutation": "the inputs hold the same values after the call as after eager's.",
    "backend-state": "the SDPA backend state (the enabled kernels and their priority order) "
                     "is the same as eager's after the call.",
    "stride": "outputs with eager's strides, as eager's layout is observable to later ops.",
    "metadata": "outputs (and gradients) with eager's shape, dtype, device and "
                "requires_grad.",
    "structure": "what eager returns, of the same types and structure, and a gradient "
                 "wherever eager has one.",
    "identity": "the same objects where eager returns an input or an SDPAParams field "
                "itself.",
    "recompile": "no new graph on a call whose guards still hold (equal inputs, the same "
                 "context; grown sizes as the dynamic-shape rules allow).",
    "frames": "as many graphs compiled on the first call as the program's graph breaks "
              "imply.",
    "crash": "compiled code runs to an end, as eager does, without killing the process.",
    "timeout": "compiled code ends, as eager does.",
}
EXPECTED_DEFAULT = "compiled behaves as eager does."


@functools.lru_cache(maxsize=1)
def environment_text() -> str:
    """collect_env's report, once per process (it takes a few seconds)."""
    from torch.utils.collect_env import get_pretty_env_info
    try:
        return get_pretty_env_info()
    except Exception as exc:  # a report without it is still a report
        return f"(collect_env failed: {exc!r})"


def issue_text(target: Target, finding: dict[str, Any], script: str) -> str:
    """The issue, in Markdown. `finding` is the corpus entry's finding record."""
    resembles = finding.get("resembles") or []
    checked = ", ".join(finding.get("checked", [])) or "(not recorded)"
    backend = finding.get("backend", "?")
    lines = [
        f"# [torch.compile] {title(target)} ({backend}, scaled_dot_product_attention)",
        "",
        "### 🐛 Describe the bug",
        "",
        f"`torch.compile(fn, backend={backend!r})` differs from eager on the program below:"
        f" {title(target)}. The script runs `fn` eagerly and compiled on identical inputs "
        "and exits 1 while they differ.",
        "",
        "```python",
        script.rstrip(),
        "```",
        "",
        f"**Expected:** {EXPECTED.get(target.check, EXPECTED_DEFAULT)}",
        "",
        "**Actual:**",
        "",
        "```",
        finding.get("explanation", "").rstrip(),
        "```",
        "",
        f"Found by sdpa-fuzz as `{finding.get('signature', '')}`, after "
        f"{finding.get('examples_at', '?')} cases, and "
        + ("shrunk by Hypothesis" if finding.get("shrunk", True) else
           "**not fully shrunk** (the run's budget ended first; a later run shrinks it "
           "further from its database)")
        + f". Checks run on this case: {checked}.",
    ]
    if resembles:
        lines += ["", "It resembles the known finding(s) " + ", ".join(
            f"`{r}`" for r in resembles) + " (same check and site, a different fingerprint)."]
    lines += ["", "### Versions", "", "```", environment_text().rstrip(), "```", ""]
    return "\n".join(lines)
