"""The pytest plugin (the `sdpa_fuzz` pytest11 entry point).

    pytest --sdpa-fuzz-backend mypkg.mod:my_backend [--sdpa-fuzz-backend B2 ...]

runs the packaged properties (`fuzz.properties`) against each backend, from any folder and
with no test files of one's own; `--sdpa-fuzz-replay` adds one test per entry of the
packaged corpus (`fuzz.known_replay`). Without `--sdpa-fuzz-backend` the plugin only
declares its options: it imports neither torch nor Hypothesis, and collects nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sdpa-fuzz", "sdpa-fuzz: torch.compile against eager around SDPA")
    group.addoption("--sdpa-fuzz-backend", action="append", default=[], metavar="BACKEND",
                    help="run sdpa-fuzz's properties against this torch.compile backend: a "
                         "registered name or module:attr (repeatable)")
    group.addoption("--sdpa-fuzz-replay", action="store_true",
                    help="also replay sdpa-fuzz's packaged corpus against each backend")
    group.addoption("--sdpa-fuzz-case-timeout", type=float, default=300.0, metavar="S",
                    help="a case running longer fails as a hang (default 300)")


def backends(config: pytest.Config) -> list[str]:
    return config.getoption("sdpa_fuzz_backend")


def pytest_configure(config: pytest.Config) -> None:
    if not backends(config):
        return
    from fuzz.backends import BackendError, resolve_backend
    from fuzz.profiles import load_profile

    for name in backends(config):
        try:
            resolve_backend(name)
        except BackendError as exc:
            raise pytest.UsageError(f"--sdpa-fuzz-backend: {exc}") from None
    load_profile()
    config.args.append(str(HERE / "properties.py"))
    if config.getoption("sdpa_fuzz_replay"):
        config.args.append(str(HERE / "known_replay.py"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    chosen = backends(metafunc.config)
    if chosen and "sdpa_fuzz_backend" in metafunc.fixturenames:
        metafunc.parametrize("sdpa_fuzz_backend", chosen)


@pytest.fixture(scope="session")
def sdpa_fuzz_case_timeout(pytestconfig: pytest.Config) -> float:
    return pytestconfig.getoption("sdpa_fuzz_case_timeout")
