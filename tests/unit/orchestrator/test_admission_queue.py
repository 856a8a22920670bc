"""Admission control's core (`orchestrator/admission.py`) on a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bookstore.orchestrator.admission import Admission


def test_checkouts_are_admitted_at_once_while_slots_are_free() -> None:
    admission = Admission(capacity=3)
    assert all(admission.arrive(0.0).admitted for _ in range(3))
    assert admission.in_flight == 3 and admission.waiting == 0


def test_beyond_the_slots_a_checkout_waits_and_a_release_admits_it() -> None:
    admission = Admission(capacity=1)
    assert admission.arrive(0.0).admitted
    waiting = admission.arrive(0.1)
    assert not waiting.admitted and waiting.waiting
    assert admission.release(0.2) == waiting.token
    assert admission.in_flight == 1 and admission.waiting == 0
    assert admission.release(0.3) is None
    assert admission.in_flight == 0


def test_a_burst_is_served_first_come_first_served() -> None:
    admission = Admission(capacity=2, interval_s=10.0)
    for _ in range(2):
        admission.arrive(0.0)
    tokens = [admission.arrive(0.0).token for _ in range(5)]
    served = [admission.release(0.5 + i * 0.1) for i in range(5)]
    assert served == tokens


def test_a_standing_queue_is_served_newest_first() -> None:
    admission = Admission(capacity=1, interval_s=1.0)
    admission.arrive(0.0)
    old = [admission.arrive(0.0).token for _ in range(3)]
    assert not admission.standing(0.9)
    assert admission.standing(1.0)
    fresh = admission.arrive(1.5).token
    assert admission.release(1.6) == fresh
    assert admission.release(1.7) == old[-1]


def test_the_queue_is_no_longer_standing_once_it_empties() -> None:
    admission = Admission(capacity=1, interval_s=1.0)
    admission.arrive(0.0)
    first = admission.arrive(0.0).token
    assert admission.standing(2.0)
    assert admission.release(2.0) == first
    assert not admission.standing(2.1)
    second = admission.arrive(2.1).token
    assert not admission.standing(3.0)
    assert admission.release(3.0) == second


def test_a_cancelled_waiter_is_never_admitted() -> None:
    admission = Admission(capacity=1)
    admission.arrive(0.0)
    a, b, c = (admission.arrive(0.0).token for _ in range(3))
    assert b is not None
    admission.cancel(b)
    admission.cancel(b)  # twice is harmless
    assert admission.waiting == 2
    assert [admission.release(0.1), admission.release(0.2)] == [a, c]
    assert admission.release(0.3) is None and admission.waiting == 0


def test_a_full_queue_refuses_the_newcomer_in_a_burst() -> None:
    admission = Admission(capacity=1, queue_limit=2, interval_s=10.0)
    admission.arrive(0.0)
    kept = [admission.arrive(0.0).token for _ in range(2)]
    refused = admission.arrive(0.1)
    assert not refused.admitted and not refused.waiting and refused.refused == ()
    assert [admission.release(0.2), admission.release(0.3)] == kept


def test_a_full_standing_queue_refuses_its_oldest_for_the_newcomer() -> None:
    admission = Admission(capacity=1, queue_limit=2, interval_s=1.0)
    admission.arrive(0.0)
    oldest, middle = (admission.arrive(0.0).token for _ in range(2))
    arrival = admission.arrive(1.5)
    assert arrival.waiting and arrival.refused == (oldest,)
    assert admission.waiting == 2
    assert admission.release(1.6) == arrival.token
    assert admission.release(1.7) == middle


def test_no_queue_refuses_beyond_the_slots() -> None:
    admission = Admission(capacity=1, queue_limit=0)
    admission.arrive(0.0)
    arrival = admission.arrive(5.0)
    assert not arrival.admitted and not arrival.waiting


@pytest.mark.parametrize(
    "arguments",
    [
        {"capacity": 0},
        {"capacity": 1, "queue_limit": -1},
        {"capacity": 1, "max_wait_s": -1.0},
        {"capacity": 1, "interval_s": 0.0},
    ],
)
def test_bad_bounds_are_refused(arguments: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Admission(**arguments)  # type: ignore[arg-type]


# ("arrive"), ("release"), ("cancel", index into the tokens waiting)
steps = st.lists(
    st.one_of(
        st.just(("arrive", 0)),
        st.just(("release", 0)),
        st.tuples(st.just("cancel"), st.integers(0, 50)),
        st.tuples(st.just("tick"), st.integers(1, 2000)),
    ),
    max_size=200,
)


@settings(deadline=None)
@given(capacity=st.integers(1, 5), queue_limit=st.integers(0, 6), steps=steps)
def test_every_checkout_is_admitted_refused_or_waiting_and_slots_are_never_exceeded(
    capacity: int, queue_limit: int, steps: list[tuple[str, int]]
) -> None:
    admission = Admission(capacity, interval_s=1.0, queue_limit=queue_limit)
    now = 0.0
    running = 0  # admitted and not yet released
    waiting: list[int] = []
    finished: set[int] = set()  # tokens admitted, refused or cancelled
    for action, value in steps:
        if action == "tick":
            now += value / 1000
        elif action == "arrive":
            arrival = admission.arrive(now)
            for token in arrival.refused:
                assert token in waiting
                waiting.remove(token)
                finished.add(token)
            if arrival.admitted:
                running += 1
            elif arrival.token is not None:
                assert arrival.token not in finished and arrival.token not in waiting
                waiting.append(arrival.token)
        elif action == "release" and running:
            token = admission.release(now)
            running -= 1
            if token is not None:
                assert token in waiting
                waiting.remove(token)
                finished.add(token)
                running += 1
            else:
                assert not waiting
        elif action == "cancel" and waiting:
            token = waiting.pop(value % len(waiting))
            admission.cancel(token)
            finished.add(token)
        assert admission.in_flight == running <= capacity
        assert admission.waiting == len(waiting) <= queue_limit
        assert not waiting or running == capacity  # nobody waits beside a free slot
