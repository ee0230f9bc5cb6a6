"""The installed sdpa-fuzz's version, for `--version` and the run report."""

from __future__ import annotations

import importlib.metadata


def tool_version() -> str:
    try:
        return importlib.metadata.version("sdpa-fuzz")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"
