"""The adaptive admission limit as a state machine: fake time, no I/O."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bookstore.orchestrator.admission import AdaptiveLimit, Ticket

NO_LOAD_S = 0.1


def saturated_round(limit: AdaptiveLimit, now: float, latency_s: float) -> int:
    """Fill the limit (one more is refused), then answer them all with `latency_s`;
    the limit the round ran under."""
    tickets = []
    while (ticket := limit.admit()) is not None:
        tickets.append(ticket)
    ran_under = len(tickets)
    for ticket in tickets:
        limit.done(ticket, now, latency_s)
    return ran_under


def grown(to: int) -> AdaptiveLimit:
    """A limit (floor 4, tolerance 2) grown to `to` by saturated rounds at no load."""
    limit = AdaptiveLimit(ceiling=200, floor=4, tolerance=2.0)
    while limit.limit < to:
        saturated_round(limit, 0.0, NO_LOAD_S)
    return limit


def admit(limit: AdaptiveLimit, count: int) -> list[Ticket]:
    tickets = [limit.admit() for _ in range(count)]
    assert all(tickets), "refused"
    return [t for t in tickets if t is not None]


def answer(
    limit: AdaptiveLimit,
    tickets: list[Ticket],
    now: float,
    latency_s: float | None,
    dropped: bool = False,
) -> None:
    for ticket in tickets:
        limit.done(ticket, now, latency_s, dropped)


def test_the_limit_starts_at_the_floor_and_refuses_beyond_it() -> None:
    limit = AdaptiveLimit(ceiling=100, floor=4)
    tickets = [limit.admit() for _ in range(4)]
    assert all(isinstance(t, Ticket) for t in tickets)
    assert limit.admit() is None
    assert limit.in_flight == 4 and limit.limit == 4


def test_not_adaptive_the_limit_is_the_ceiling_whatever_the_latency() -> None:
    limit = AdaptiveLimit(ceiling=8, floor=2, adaptive=False)
    for now, latency_s in enumerate([0.01, 50.0, 50.0, 0.01, 99.0]):
        assert saturated_round(limit, float(now), latency_s) == 8
    assert limit.limit == 8 and limit.in_flight == 0


def test_at_the_no_load_latency_and_saturated_it_grows_to_the_ceiling() -> None:
    limit = AdaptiveLimit(ceiling=200, floor=4, tolerance=3.0)
    seen = [saturated_round(limit, float(t), NO_LOAD_S) for t in range(60)]
    assert seen[:4] == [4, 8, 16, 32]  # slow start doubles each round
    assert seen == sorted(seen) and limit.limit == 200


def test_without_reaching_the_limit_it_does_not_grow() -> None:
    limit = AdaptiveLimit(ceiling=200, floor=4, tolerance=3.0)
    saturated_round(limit, 0.0, NO_LOAD_S)
    grown = limit.limit
    for t in range(50):  # one checkout at a time: far below the limit
        ticket = limit.admit()
        assert ticket is not None
        limit.done(ticket, 1.0 + t, NO_LOAD_S)
    assert limit.limit == grown


def test_under_sustained_latency_growth_it_falls_to_the_floor() -> None:
    limit = AdaptiveLimit(ceiling=200, floor=4, tolerance=3.0)
    for t in range(8):
        saturated_round(limit, float(t), NO_LOAD_S)
    peak = limit.limit
    assert peak >= 64
    latency_s, limits = NO_LOAD_S, []
    for t in range(8, 40):
        latency_s *= 1.3
        saturated_round(limit, float(t), latency_s)
        limits.append(limit.limit)
    assert limits == sorted(limits, reverse=True)
    assert limits[-1] == 4 < peak


def test_a_fall_is_proportional_to_the_excess_and_at_most_half() -> None:
    limit = grown(64)
    saturated_round(limit, 1.0, 2.5 * NO_LOAD_S)  # target / mean = 0.8
    assert limit.limit == int(64 * 0.8)
    saturated_round(limit, 2.0, 100 * NO_LOAD_S)
    assert limit.limit == int(64 * 0.8 * 0.5)


def test_after_the_first_fall_it_grows_by_one_a_round() -> None:
    limit = grown(32)
    saturated_round(limit, 1.0, 10 * NO_LOAD_S)
    fallen = limit.limit
    for step in range(1, 6):
        saturated_round(limit, 1.0 + step, NO_LOAD_S)
        assert limit.limit == fallen + step


def test_a_fall_comes_once_the_floor_of_answers_calls_for_it() -> None:
    limit = grown(64)
    tickets = admit(limit, 64)
    answer(limit, tickets[:3], 1.0, 10 * NO_LOAD_S)
    assert limit.limit == 64  # three answers are not enough to decide
    answer(limit, tickets[3:4], 1.0, 10 * NO_LOAD_S)
    assert limit.limit == 32  # the fourth is: no need to wait for all 64


def test_checkouts_answered_503_are_drops_and_lower_the_limit() -> None:
    limit = grown(64)
    tickets = admit(limit, 64)
    answer(limit, tickets[:3], 1.0, NO_LOAD_S)
    answer(limit, tickets[3:4], 1.0, None, dropped=True)  # one answer in four a drop
    assert limit.limit == 48
    answer(limit, tickets[4:], 1.0, NO_LOAD_S)  # admitted before that fall: no more count
    assert limit.limit == 48
    no_load = limit.no_load_s
    while limit.limit > 4:  # every checkout timing out: no latency, and yet it falls
        answer(limit, admit(limit, limit.limit), 2.0, None, dropped=True)
    assert limit.no_load_s == no_load


def test_checkouts_admitted_before_a_decision_do_not_count_in_the_next_round() -> None:
    limit = grown(32)
    first = admit(limit, 32)
    answer(limit, first[:16], 1.0, NO_LOAD_S)
    old = admit(limit, 16)  # the same round, still in flight...
    answer(limit, first[16:], 1.0, NO_LOAD_S)
    assert limit.limit == 64  # ...when the round's 32 samples grew the limit
    answer(limit, old, 2.0, 100 * NO_LOAD_S)  # slow, but admitted under the old limit
    assert limit.limit == 64
    assert saturated_round(limit, 3.0, 100 * NO_LOAD_S) == 64
    assert limit.limit == 32  # the new round's own samples do count


def test_answers_that_are_not_samples_change_nothing_but_the_count() -> None:
    limit = AdaptiveLimit(ceiling=200, floor=4, tolerance=2.0)
    for t in range(100):
        answer(limit, admit(limit, limit.limit), float(t), None)
    assert limit.limit == 4 and limit.in_flight == 0 and limit.no_load_s is None


def test_the_no_load_latency_comes_from_low_load_checkouts_only() -> None:
    limit = AdaptiveLimit(ceiling=200, floor=4, tolerance=3.0)
    while limit.limit < 16:
        saturated_round(limit, 0.0, 0.2)
    assert limit.no_load_s == 0.2
    held = [limit.admit() for _ in range(4)]
    loaded = [limit.admit() for _ in range(8)]
    assert all(t is not None and t.low_load for t in held)
    for ticket in loaded:  # fast, but admitted with the floor already in flight
        assert ticket is not None and not ticket.low_load
        limit.done(ticket, 1.0, 0.01)
    assert limit.no_load_s == 0.2
    for ticket in held:
        assert ticket is not None
        limit.done(ticket, 1.0, 0.15)
    assert limit.no_load_s == 0.15


def test_the_no_load_latency_rises_once_the_window_has_passed() -> None:
    limit = AdaptiveLimit(ceiling=200, floor=4, tolerance=3.0, window_s=10.0)

    def alone(now: float, latency_s: float) -> None:
        ticket = limit.admit()
        assert ticket is not None and ticket.low_load
        limit.done(ticket, now, latency_s)

    alone(0.0, 0.05)
    alone(4.0, 0.5)
    assert limit.no_load_s == 0.05
    alone(6.0, 0.5)  # a new half-window: the older half still holds 0.05
    assert limit.no_load_s == 0.05
    alone(12.0, 0.4)  # the half with 0.05 has left the window
    assert limit.no_load_s == 0.4


def test_the_floor_is_at_least_one_and_at_most_the_ceiling() -> None:
    assert AdaptiveLimit(ceiling=2, floor=10).limit == 2
    assert AdaptiveLimit(ceiling=50, floor=0).floor == 1
    assert AdaptiveLimit(ceiling=0, floor=4).admit() is None
    with pytest.raises(ValueError):
        AdaptiveLimit(ceiling=50, tolerance=0.5)


# (admit?, how many or which, latency or not a sample, time passing)
_STEP = st.tuples(
    st.booleans(),
    st.integers(0, 1000),
    st.one_of(st.none(), st.floats(0.001, 30.0)),
    st.floats(0.0, 5.0),
)


@settings(max_examples=300, deadline=None)
@given(
    ceiling=st.integers(1, 300),
    floor=st.integers(1, 40),
    tolerance=st.floats(1.0, 20.0),
    steps=st.lists(_STEP, max_size=300),
)
def test_the_limit_stays_within_floor_and_ceiling_and_admits_no_more(
    ceiling: int,
    floor: int,
    tolerance: float,
    steps: list[tuple[bool, int, float | None, float]],
) -> None:
    limit = AdaptiveLimit(ceiling=ceiling, floor=floor, tolerance=tolerance, window_s=10.0)
    low, high = min(floor, ceiling), ceiling
    outstanding: list[Ticket] = []
    now = 0.0
    for admit, number, latency_s, advance in steps:
        if admit:
            for _ in range(number % 40 + 1):
                before = limit.in_flight
                ticket = limit.admit()
                assert (ticket is None) == (before >= limit.limit)
                if ticket is not None:
                    outstanding.append(ticket)
        elif outstanding:
            now += advance
            ticket = outstanding.pop(number % len(outstanding))
            limit.done(ticket, now, latency_s, dropped=latency_s is None and number % 2 == 0)
        assert low <= limit.limit <= high
        assert limit.in_flight == len(outstanding)
