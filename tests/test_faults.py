"""The oracle catches every fault-injection backend, and shrinks to the fault's condition.

Each backend in tests/faults.py is wrong under one condition only. Hypothesis, within the
`ci` profile's budget, must find a failing case, and the shrunk case must still satisfy
that condition: a report that does not name its cause is not a useful report.
"""

from __future__ import annotations

from collections import Counter

import json
import multiprocessing
import time

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from fuzz.case import Case
from fuzz.caseio import case_from_json, case_to_json
from fuzz.execute import run_case
from fuzz.minimal import minimal_script, target_of
from fuzz.oracle import judge
from strategies import cases
from strategies.cases import attention_cases, program_cases
from tests import faults


DYNAMO_FAULTS = {"clone_inputs", "params_reconstruction_swapped", "kernel_exit_dropped",
                 "stale_outputs"}
GRADIENT_FAULTS = {"gqa_key_grad", "long_wide_query_grad"}
# Faults of long sequences: seq_lens() draws one of 9 to 80 a third of the time, and the
# condition needs a wide value too, so a search of 300 cases missed it one time in two.
LONG_FAULTS = {"long_wide_query_grad"}
DYNAMIC_FAULTS = {"dynamic_rows_nan"}
ZERO_SIZE_FAULTS = {"no_keys_nan"}


SHRINK_S = 5.0  # shrinking's time in a fault's test, after the first failure
SHRUNK_FAULTS = ("negative_scale", "clone_inputs", "gqa_key_grad", "dynamic_rows_nan")


def fault_failure(backend: str, strategy, clean_backend: str = "eager", within=None,
                  max_examples=300, attempts: int = 3, shrink_s: float = SHRINK_S):
    """Run the property against `backend`; return (a failing case, its verdict): the
    first one found among the cases that meet `within`, the fault's condition, where it
    is given, and otherwise the failing case shrunk for `shrink_s` seconds.

    With `within`, only the cases that meet it are compiled and judged, and nothing is
    shrunk: a fault backend is correct outside its condition by construction (and
    test_faults_are_correct_outside_their_condition holds it to that), so judging the
    others proves nothing, and they were most of a search's time; shrinking is held to
    its condition by the searches that shrink. Drawing a case costs milliseconds, so what
    this still asserts, that the space reaches the condition within `max_examples` draws
    and that the oracle catches the fault there, takes seconds instead of 20 to 60.

    A case counts only when it fails, twice, in a way the clean backend the fault is
    built on does not: the program space holds real torch divergences too, and those
    are not the fault's. A search that finds nothing is run again from another seed, up to
    `attempts` searches: Hypothesis draws constants from the code it has loaded, so any
    change to the package moves a seeded search, and one search of 300 cases may miss a
    fault whose condition is rare. Shrinking was most of a shrinking search's time (26 of
    51 s, 25 of 30 s), and the suite is CPU-bound: past `shrink_s`, every candidate
    passes unjudged but the cases that failed already, so Hypothesis ends with its
    smallest so far.
    """
    last: dict = {}
    failed: dict[str, object] = {}  # every case that failed (as JSON: NaN != NaN), its verdict

    def fail(case, verdict) -> None:  # one raising line: Hypothesis tells failures apart by it
        failed[case_to_json(case)] = verdict
        last["case"], last["verdict"] = case, verdict  # the last raised is what it reports
        raise AssertionError(verdict.signature)

    def prop(case):
        if within is not None and not within(case):
            return
        if "at" in last and time.monotonic() - last["at"] > shrink_s:
            if case_to_json(case) in failed:  # what Hypothesis replays as its smallest
                fail(case, failed[case_to_json(case)])
            return
        verdict = judge(case, run_case(case, backend))
        if verdict.ok:
            return
        clean = {f.signature for f in judge(case, run_case(case, clean_backend)).failures}
        new = {f.signature for f in verdict.failures} - clean
        # What a second run does not show is not the fault's (the driver quarantines it as
        # flaky): a CI run once failed on a bfloat16 values divergence that did not repeat.
        if new and new & {f.signature for f in judge(case, run_case(case, backend)).failures}:
            last.setdefault("at", time.monotonic())
            fail(case, verdict)

    phases = (Phase.generate,) if within is not None else (Phase.generate, Phase.shrink)
    for attempt in range(attempts):
        search = seed(attempt)(settings(
            max_examples=max_examples, database=None, deadline=None, phases=phases,
            print_blob=False, suppress_health_check=list(HealthCheck))(given(strategy)(prop)))
        try:
            search()
        except AssertionError:
            return last["case"], last["verdict"]
    raise AssertionError(f"{backend}: no failing case in {attempts} searches of "
                         f"{max_examples} cases")


def fault_search(fault: str, backend: str):
    """The part of the space a fault's test searches, to keep CI short: backward for the
    gradient faults alone (always), later calls of other sizes for the dynamic-shape
    one alone, since each costs a compile, only lengths from 9 up for the long
    sequences' fault (shrinking can still lose its condition by shortening them), and
    a zero size always (one case in twenty otherwise) for the zero-size fault; no
    global modes or freezing, which tests/test_modes.py searches with faults of their own
    (freezing's one more draw also moved these seeded searches: one took 202 s instead of
    31). The fuzzer itself, and benchmarks/detection.py, search it all."""
    if fault in DYNAMO_FAULTS:
        return program_cases(backend, freezing=False)
    return attention_cases(backend, backward=st.just(fault in GRADIENT_FAULTS),
                           grows=st.lists(st.integers(1, 3), max_size=2)
                           if fault in DYNAMIC_FAULTS else st.just([]), modes=False,
                           lengths=st.integers(9, 80) if fault in LONG_FAULTS else None,
                           freezing=False,
                           **({"zero_size": st.just(True)} if fault in ZERO_SIZE_FAULTS else {}))


@pytest.mark.parametrize("fault", SHRUNK_FAULTS)
def test_fault_is_caught_and_shrunk_to_its_condition(fault: str) -> None:
    """Numeric faults are searched with single SDPA calls and Dynamo-level faults with
    programs: the two halves of what the property test draws from. One fault of each
    kind of search (single call, program, backward, later calls of other sizes) is
    shrunk: what shrinking keeps is a property of the search, not of the fault."""
    case, explanation, script_exit = isolated_search(fault, shrink=True)
    assert faults.CONDITIONS[fault](case), (
        f"{fault}: the shrunk case lost the fault's condition:\n{case}\n{explanation}")
    assert script_exit == 1, f"{fault}: its minimal repro script does not show it:\n{explanation}"


@pytest.mark.parametrize("fault", sorted(set(faults.CONDITIONS) - set(SHRUNK_FAULTS)))
def test_fault_is_caught_where_its_condition_holds(fault: str) -> None:
    """The space reaches the fault's condition and the oracle catches it there, with a
    minimal script that shows it."""
    _, explanation, script_exit = isolated_search(fault, shrink=False)
    assert script_exit == 1, f"{fault}: its minimal repro script does not show it:\n{explanation}"


def isolated_search(fault: str, shrink: bool) -> tuple[Case, str, int]:
    """The fault's search in a fresh process: (the failing case, its explanation, the exit
    status of the minimal script of the fault's failure, run there too). The
    same derandomized search found a fault alone and missed it after other tests had run
    in the process (seen for odd_head_dim_scale after the Inductor property test; the
    state involved is not established), so each search gets a process of its own, forked
    from a server that has only imported the modules (4 s of CPU saved per search)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "tests.test_faults"])
    with ctx.Pool(1) as pool:
        found = json.loads(pool.apply_async(search_result, (fault, shrink)).get(timeout=1800))
    return case_from_json(found["case"]), found["explanation"], found["script_exit"]


def minimal_exit(case: Case, verdict, backend: str) -> int:
    """The exit status of the minimal script of the fault's own failure (one the clean
    backend does not show), run in this process as confirmation runs it in its own."""
    clean = {f.signature for f in judge(case, run_case(case, "eager")).failures}
    failure = next(f for f in verdict.failures if f.signature not in clean)
    source = minimal_script(case, target_of(failure, verdict.bounds), backend)
    try:
        exec(compile(source, "<minimal repro>", "exec"), {"__name__": "__main__"})
    except SystemExit as exited:
        return 1 if exited.code else 0
    return 0


def search_result(fault: str, shrink: bool) -> str:
    """The fault's search, as JSON: the failing case, its explanation, the script's exit."""
    backend = f"tests.faults:{fault}"
    case, verdict = fault_failure(backend, fault_search(fault, backend),
                                  within=None if shrink else faults.CONDITIONS[fault])
    status = minimal_exit(case, verdict, backend)
    return json.dumps({"case": case_to_json(case), "explanation": verdict.explain(),
                       "script_exit": status})


def test_faults_are_correct_outside_their_condition() -> None:
    """A fault backend that is wrong everywhere would prove nothing about the oracle. Each
    is judged on up to PER_FAULT drawn cases outside its condition (and must meet two):
    one wrong everywhere fails on the first, and judging every fault on every case cost
    this test 50 to 90 s of CI."""
    per_fault, seen = 4, Counter()

    @settings(max_examples=10, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(cases("eager"))
    def prop(case):
        outside = [f for f, condition in faults.CONDITIONS.items()
                   if not condition(case) and seen[f] < per_fault]
        if not outside:
            return
        clean = {f.signature for f in judge(case, run_case(case, "eager")).failures}
        for fault in outside:
            seen[fault] += 1
            verdict = judge(case, run_case(case, f"tests.faults:{fault}"))
            new = [f for f in verdict.failures if f.signature not in clean]
            assert not new, f"{fault} fails outside its condition: {verdict.explain()}"

    prop()
    assert all(seen[f] >= 2 for f in faults.CONDITIONS), seen
