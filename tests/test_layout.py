"""The house: a case flows one way (docs/architecture.md), so no module of ours imports
one that imports it back, at module level or inside a function (the command line's lazy
imports count too)."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("fuzz", "strategies")


def module_of(name: str) -> str | None:
    """The module of ours that `name` (an import's target) is, if any."""
    parts = name.split(".")
    if parts[0] not in PACKAGES:
        return None
    for n in range(len(parts), 0, -1):
        dotted = ".".join(parts[:n])
        if (REPO / Path(*parts[:n])).with_suffix(".py").exists() or \
                (REPO / Path(*parts[:n]) / "__init__.py").exists():
            return dotted
    return None


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found |= {module_of(f"{node.module}.{a.name}") or module_of(node.module)
                      for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {module_of(a.name) for a in node.names}
    return found - {None}


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for package in PACKAGES:
        for path in (REPO / package).glob("*.py"):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            graph[name] = imports_of(path) - {name}
    return graph


def test_no_module_imports_one_that_imports_it_back() -> None:
    graph = import_graph()
    assert len(graph) > 40 and "fuzz.case" in graph["fuzz.check"] | graph["fuzz.plan"]
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as cycle:
        raise AssertionError("an import cycle: " + " -> ".join(cycle.args[1])) from None
