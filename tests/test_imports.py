"""The house: no module of `fuzz/` imports one that imports it back, even lazily, so the
layout reads as one flow (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The sibling modules `path` imports anywhere in it, function bodies included."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and \
                node.module.split(".")[0] == "fuzz":
            parts = node.module.split(".")
            found |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("fuzz.")}
    return (found & modules) - {path.stem}


def test_no_module_imports_one_that_imports_it_back() -> None:
    modules = {p.stem for p in FUZZ.glob("*.py")} - {"__init__"}
    graph = {m: imports_of(FUZZ / f"{m}.py", modules) for m in modules}

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            for d in graph[todo.pop()] - seen:
                if d == goal:
                    return True
                seen.add(d)
                todo.append(d)
        return False

    circles = sorted((a, b) for a in graph for b in graph[a] if reaches(b, a))
    assert not circles, f"modules that import each other, directly or not: {circles}"
