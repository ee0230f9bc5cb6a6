"""Hypothesis profiles and the choice of backends under test.

Profiles: `ci` (small, derandomised), `dev` (the default), `fuzz` (long runs). Pick one
with HYPOTHESIS_PROFILE. Backends: `--backend B` (repeatable) or SDPA_FUZZ_BACKENDS=a,b;
`module:attr` names any torch.compile backend callable.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                    HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=25, derandomize=True, print_blob=True, **COMMON)
settings.register_profile("dev", max_examples=100, print_blob=True, **COMMON)
settings.register_profile("fuzz", max_examples=100_000, print_blob=True, **COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", selected_backends(metafunc.config))
