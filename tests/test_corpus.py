"""Claims: how runs sharing one corpus folder avoid reporting the same signature twice."""

from __future__ import annotations

import subprocess
import sys

from fuzz.corpus import claim, prune_claims, release

SIGNATURE = "values:out:float32"


def test_a_claim_is_exclusive_until_released(tmp_path) -> None:
    assert claim(tmp_path, SIGNATURE)
    assert not claim(tmp_path, SIGNATURE)
    assert claim(tmp_path, "values:out:float16")  # other signatures are free
    release(tmp_path, SIGNATURE)
    assert claim(tmp_path, SIGNATURE)


def test_a_live_run_keeps_its_claim_and_a_dead_one_loses_it(tmp_path) -> None:
    other = subprocess.Popen([sys.executable, "-c",
                              f"from fuzz.corpus import claim; import pathlib, time; "
                              f"claim(pathlib.Path({str(tmp_path)!r}), {SIGNATURE!r}); "
                              f"print('held', flush=True); time.sleep(60)"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        assert not claim(tmp_path, SIGNATURE)
        prune_claims(tmp_path)
        assert not claim(tmp_path, SIGNATURE)  # pruning spares a live holder
    finally:
        other.kill()
        other.wait()
    assert claim(tmp_path, SIGNATURE)  # a killed run's claim is taken over
    release(tmp_path, SIGNATURE)
    subprocess.run([sys.executable, "-c", f"from fuzz.corpus import claim; import pathlib; "
                    f"claim(pathlib.Path({str(tmp_path)!r}), {SIGNATURE!r})"], check=True)
    prune_claims(tmp_path)
    assert not list((tmp_path / ".claims").iterdir())


def test_a_flaky_finding_leaves_its_key_open_until_the_third(tmp_path) -> None:
    """A quarantined instance does not make its bug known: a slow case that once ran past
    a short case timeout must not hide a real hang. After MAX_FLAKY quarantined instances
    of one key a run leaves that key alone, whatever the case."""
    from fuzz.case import Attention, Case, Program, TensorSpec
    from fuzz.corpus import Expectation, known_bugs, write_entry
    from fuzz.driver import Fuzzer, RunConfig
    from fuzz.known import MAX_FLAKY

    case = Case(inputs=tuple((n, TensorSpec((1, 1, 2, 4))) for n in "qkv"),
                program=Program((Attention("out"),), ("out",)))
    flaky = Expectation("flaky", "timeout:worker:hang", note="did not reproduce")
    for seed in range(MAX_FLAKY):
        write_entry(tmp_path / "quarantine", case.reseeded(seed + 1), flaky,
                    {"signature": "timeout:worker:hang", "key": "timeout:worker:hang"},
                    "eager")
        assert not known_bugs(tmp_path, "eager", ("dynamo",))
        fuzzer = Fuzzer(RunConfig(corpus=tmp_path, backend="eager"))
        closed = fuzzer.known.covering("timeout:worker:hang", frozenset({"sdpa:causal"})) is not None
        assert closed == (seed + 1 >= MAX_FLAKY)
