"""Swarm draws (`strategies.swarm`): a departure a case may not take is never in it, and
each departure is in some case where it is allowed; the plain calls a search starts with
take none but sizes of 1, and are short, and the simplest takes none."""

from __future__ import annotations

import pytest
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st

from fuzz.case import Attention, TensorSpec, walk
from strategies.attention import EXTREME_SCALES
from strategies.cases import attention_cases, cases, plain_cases
from strategies.swarm import DEPARTURES, Swarm

NONE = st.just(Swarm(frozenset()))


def _specs(case) -> dict[str, TensorSpec]:
    return {n: s for n, s in case.inputs if isinstance(s, TensorSpec)}


@given(attention_cases(form="any", swarm=NONE))
def test_a_case_allowed_no_departure_takes_none(case) -> None:
    specs = _specs(case)
    q, k, v = specs["q"], specs["k"], specs["v"]
    assert {q.values, k.values, v.values} == {"normal"} and not _equal_rows(q, k, v)
    L, S, E, Ev = q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1]
    assert min(L, S, E, Ev) >= 2  # no size of 1
    assert 0 not in q.shape + k.shape + v.shape
    assert k.shape[-1] == E and v.shape[-2] == S  # no invalid argument
    mask = specs.get("mask")
    if mask is not None:
        # a fully masked row only beside rows that are not
        assert (mask.values != "full_rows" or mask.shape[-2] > 1) and mask.shape[-1] == S
        assert mask.dtype in ("bool", q.dtype) and mask.shape[-2:] in ((L, S), (1, S))
    for call in walk(case.program.body):
        if isinstance(call, Attention):
            assert call.scale not in EXTREME_SCALES and 0 <= call.dropout_p < 1
    assert len(case.calls) == 1
    call = case.calls[0]
    assert (call.grow, call.backends, call.reseed, call.autocast) == (0, None, 0, None)
    assert call.grad_mode == "default" or case.compile.freezing


def _equal_rows(*specs: TensorSpec) -> bool:
    """Whether a tensor repeats one row: laid out as a row expanded along dim -2."""
    return any(s.layout == "expanded" and s.expand_dim == len(s.shape) - 2 for s in specs)


def _departures(case) -> set[str]:
    """The departures a case takes that this test can see from the case alone."""
    specs = _specs(case)
    q, k, v = specs["q"], specs["k"], specs["v"]
    found = set()
    if {q.values, k.values, v.values} != {"normal"} or _equal_rows(q, k, v):
        found.add("values")
    dims = (q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1])
    if 1 in dims:
        found.add("unit-sizes")
    if 0 in q.shape + k.shape + v.shape:
        found.add("zero-size")
    if any(isinstance(s, Attention) and s.scale in EXTREME_SCALES
           for s in walk(case.program.body)):
        found.add("scale-extremes")
    mask = specs.get("mask")
    if mask is not None and (mask.values == "full_rows" and mask.shape[-2] == 1
                             or mask.shape[-1] == 1 != k.shape[-2]):
        found.add("mask-edges")
    if len(case.calls) > 1 or case.calls[0].grow:
        found.add("calls")
    if case.calls[0].autocast is not None:
        found.add("modes")
    return found


@settings(max_examples=300, database=None)
@given(st.data())
def test_every_departure_is_taken_where_allowed_and_only_there(data) -> None:
    allowed = data.draw(st.sets(st.sampled_from(DEPARTURES)))
    case = data.draw(attention_cases(form="any", swarm=st.just(Swarm(frozenset(allowed)))))
    assert _departures(case) <= set(allowed)


@settings(max_examples=200, database=None)
@given(plain_cases())
def test_a_plain_case_is_one_call_that_departs_only_in_sizes_of_1(case) -> None:
    assert [type(s) for s in case.program.body] == [Attention]
    assert _departures(case) <= {"unit-sizes"}
    specs = _specs(case)
    assert max(specs["q"].shape[-2], specs["k"].shape[-2]) <= 80  # long ones are not plain


def test_other_cases_reach_past_the_cpu_flash_kernel_s_key_block() -> None:
    """The CPU flash kernel splits keys into blocks of 512; lengths one off it are drawn,
    rarely, outside the plain calls."""
    find(cases(), lambda case: _specs(case)["k"].shape[-2] >= 511,
         settings=settings(max_examples=1000, database=None, derandomize=True))


def test_the_simplest_plain_case_has_no_size_of_1() -> None:
    """What Hypothesis judges first in every search and round: a softmax over one key is 1,
    so a 1x1x1x1 call shows no numeric fault."""
    first: list = []

    @settings(max_examples=1, database=None, phases=[Phase.generate])
    @given(plain_cases())
    def draw(case) -> None:
        first.append(case)

    draw()
    assert "unit-sizes" not in _departures(first[0]), first[0]


@pytest.mark.parametrize("departure", sorted(set(DEPARTURES) - {"invalid"}))
def test_each_departure_is_drawn_where_it_alone_is_allowed(departure) -> None:
    """An invalid case is told by its error, not its spec."""
    seen: set[str] = set()

    @settings(max_examples=300, database=None, derandomize=True)
    @given(attention_cases(form="any", swarm=st.just(Swarm(frozenset({departure})))))
    def collect(case) -> None:
        seen.update(_departures(case))

    collect()
    assert seen == {departure}


def test_plain_cases_draw_a_fully_masked_row_beside_others() -> None:
    """A padded batch's fully masked row hides only itself, so plain calls draw it where
    other rows remain; without it, 13 of 200 plain calls showed a fully-masked-row fault
    and 19 of the plain random search's."""
    def beside_others(case) -> bool:
        mask = _specs(case).get("mask")
        return mask is not None and mask.values == "full_rows" and mask.shape[-2] > 1

    find(plain_cases(), beside_others, settings=settings(max_examples=300, database=None,
                                                          derandomize=True))
