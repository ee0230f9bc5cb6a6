"""Hypothesis profiles (`fuzz.profiles`: `ci`, `dev`, `fuzz`, chosen with
HYPOTHESIS_PROFILE) and the choice of backends under test: `--backend B` (repeatable) or
SDPA_FUZZ_BACKENDS=a,b; `module:attr` names any torch.compile backend callable. The
installed plugin's `--sdpa-fuzz-backend` (fuzz/plugin.py) takes over where it is given.
"""

from __future__ import annotations

import os

import pytest

from fuzz.profiles import load_profile

load_profile()

DEFAULT_BACKENDS = ("eager", "aot_eager", "inductor")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--backend", action="append", default=None,
                     help="torch.compile backend to fuzz (repeatable; module:attr allowed)")


def selected_backends(config: pytest.Config) -> list[str]:
    chosen = config.getoption("--backend")
    if chosen:
        return chosen
    env = os.environ.get("SDPA_FUZZ_BACKENDS")
    return [b.strip() for b in env.split(",") if b.strip()] if env else list(DEFAULT_BACKENDS)


# Modules whose tests take minutes, collected first so that pytest-xdist hands them out
# first: the suite's wall time is then not a long test started last on an idle machine.
SLOW_FIRST = ("test_driver", "test_faults", "test_plugin", "test_cli", "test_campaign",
              "test_models", "test_modules", "test_property")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(SLOW_FIRST)))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for name in ("backend", "sdpa_fuzz_backend"):
        if name in metafunc.fixturenames and not metafunc.config.getoption(
                "sdpa_fuzz_backend"):
            metafunc.parametrize(name, selected_backends(metafunc.config))
