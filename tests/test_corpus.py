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
