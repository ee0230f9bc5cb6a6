"""Module sources a repro script carries, so that it runs the fuzzer's own code with torch
alone: each module's source less its docstring and its imports of sibling modules, which
the script defines before it, in order.
"""

from __future__ import annotations

import ast
import inspect
from types import ModuleType

from fuzz import calls, check, errors, sdpa_state, standalone, terms, tolerance
from fuzz.kernels import FUSED

# In import order: each imports only modules before it (tolerance needs FUSED, given first).
CARRIED: tuple[ModuleType, ...] = (sdpa_state, errors, tolerance, terms, calls, check,
                                    standalone)


def module_body(module: ModuleType) -> str:
    """The module's source without its docstring, `from __future__` or `fuzz` imports."""
    source = inspect.getsource(module)
    tree = ast.parse(source)
    drop: set[int] = set()
    for node in tree.body:
        docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) \
            and isinstance(node.value.value, str) and node is tree.body[0]
        sibling = isinstance(node, ast.ImportFrom) and (
            node.module == "__future__" or (node.module or "").split(".")[0] == "fuzz")
        if docstring or sibling:
            assert node.end_lineno is not None
            drop.update(range(node.lineno, node.end_lineno + 1))
    lines = source.splitlines()
    kept = [line for i, line in enumerate(lines, start=1) if i not in drop]
    return "\n".join(kept).strip() + "\n"


def carried_source() -> str:
    """Every carried module's body, in order, under a header naming each."""
    parts = [f"FUSED = {FUSED!r}\n"]
    for module in CARRIED:
        parts.append(f"# --- {module.__name__} " + "-" * (80 - 7 - len(module.__name__)))
        parts.append(module_body(module))
    return "\n\n".join(parts)
