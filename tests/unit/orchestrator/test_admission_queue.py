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
    assert admission.release(0.2) == (waiting.token,)
    assert admission.in_flight == 1 and admission.waiting == 0
    assert admission.release(0.3) == ()
    assert admission.in_flight == 0


def test_a_burst_is_served_first_come_first_served() -> None:
    admission = Admission(capacity=2, interval_s=10.0)
    for _ in range(2):
        admission.arrive(0.0)
    tokens = [admission.arrive(0.0).token for _ in range(5)]
    served = [t for i in range(5) for t in admission.release(0.5 + i * 0.1)]
    assert served == tokens


def test_a_standing_queue_is_served_newest_first() -> None:
    admission = Admission(capacity=1, interval_s=1.0)
    admission.arrive(0.0)
    old = [admission.arrive(0.0).token for _ in range(3)]
    assert not admission.standing(0.9)
    assert admission.standing(1.0)
    fresh = admission.arrive(1.5).token
    assert admission.release(1.6) == (fresh,)
    assert admission.release(1.7) == (old[-1],)


def test_the_queue_is_no_longer_standing_once_it_empties() -> None:
    admission = Admission(capacity=1, interval_s=1.0)
    admission.arrive(0.0)
    first = admission.arrive(0.0).token
    assert admission.standing(2.0)
    assert admission.release(2.0) == (first,)
    assert not admission.standing(2.1)
    second = admission.arrive(2.1).token
    assert not admission.standing(3.0)
    assert admission.release(3.0) == (second,)


def test_a_cancelled_waiter_is_never_admitted() -> None:
    admission = Admission(capacity=1)
    admission.arrive(0.0)
    a, b, c = (admission.arrive(0.0).token for _ in range(3))
    assert b is not None
    admission.cancel(b)
    admission.cancel(b)  # twice is harmless
    assert admission.waiting == 2
    assert [admission.release(0.1), admission.release(0.2)] == [(a,), (c,)]
    assert admission.release(0.3) == () and admission.waiting == 0


def test_a_full_queue_refuses_the_newcomer_in_a_burst() -> None:
    admission = Admission(capacity=1, queue_limit=2, interval_s=10.0)
    admission.arrive(0.0)
    kept = [admission.arrive(0.0).token for _ in range(2)]
    refused = admission.arrive(0.1)
    assert not refused.admitted and not refused.waiting and refused.refused == ()
    assert [*admission.release(0.2), *admission.release(0.3)] == kept


def test_a_full_standing_queue_refuses_its_oldest_for_the_newcomer() -> None:
    admission = Admission(capacity=1, queue_limit=2, interval_s=1.0)
    admission.arrive(0.0)
    oldest, middle = (admission.arrive(0.0).token for _ in range(2))
    arrival = admission.arrive(1.5)
    assert arrival.waiting and arrival.refused == (oldest,)
    assert admission.waiting == 2
    assert admission.release(1.6) == (arrival.token,)
    assert admission.release(1.7) == (middle,)


def test_no_queue_refuses_beyond_the_slots() -> None:
    admission = Admission(capacity=1, queue_limit=0)
    admission.arrive(0.0)
    arrival = admission.arrive(5.0)
    assert not arrival.admitted and not arrival.waiting


def overloaded(capacity: int, floor: int, target_s: float) -> Admission:
    """`capacity` checkouts in flight since 0.0 and 100 waiting; nothing answered yet."""
    admission = Admission(capacity, interval_s=1.0, floor=floor, target_s=target_s)
    for _ in range(capacity + 100):
        admission.arrive(0.0)
    return admission


def answers(admission: Admission, start: float, stop: float, every: float) -> list[int]:
    """A closed loop: an answer every `every` s from `start` until `stop`, and each
    answered customer coming back at once. How many each answer admitted."""
    admitted = []
    for i in range(round((stop - start) / every)):
        now = start + i * every
        admitted.append(len(admission.release(now)))
        admission.arrive(now)
    return admitted


def test_under_an_overload_the_slots_are_what_finishes_in_the_target_time() -> None:
    admission = overloaded(capacity=64, floor=4, target_s=0.5)
    # 20 answers a second: while the queue is young, each admits the next waiter.
    assert answers(admission, 0.05, 1.0, 0.05) == [1] * 19
    assert admission.slots(0.99) == 64  # not standing yet
    assert admission.slots(1.0) == 9  # 19 answers in the last second, x 0.5 s
    # Standing: answers admit nobody until fewer than the slots are in flight...
    assert answers(admission, 1.0, 3.7, 0.05) == [0] * 54
    # ...and then one each: as many in flight as finish in 0.5 s.
    assert answers(admission, 3.7, 6.0, 0.05) == [1] * 46
    assert admission.in_flight == 10


def test_the_slots_grow_back_with_the_rate_several_at_a_release() -> None:
    admission = overloaded(capacity=64, floor=2, target_s=0.5)
    answers(admission, 1.0, 8.0, 0.1)  # 10 a second
    assert admission.in_flight == 5
    grown = answers(admission, 8.0, 10.0, 0.01)  # 100 a second
    assert max(grown) >= 2
    assert admission.in_flight == 50


def test_the_slots_never_fall_below_the_floor_nor_rise_above_the_capacity() -> None:
    admission = overloaded(capacity=8, floor=3, target_s=0.5)
    assert admission.slots(5.0) == 3  # no answer for 5 s
    admission = overloaded(capacity=8, floor=3, target_s=100.0)
    admission.release(1.5)
    assert admission.slots(1.5) == 8


def test_the_unqueued_time_is_the_mean_of_checkouts_answered_with_nobody_waiting() -> None:
    admission = Admission(capacity=2, interval_s=1.0)
    admission.arrive(0.0)
    admission.release(1.2, arrived=0.0)
    assert admission.unqueued_s == pytest.approx(1.2)  # the first answer, as it is
    admission.arrive(2.0)
    admission.release(2.2, arrived=2.0)
    assert 1.0 < admission.unqueued_s < 1.2  # a moving mean: one answer moves it a little
    before = admission.unqueued_s
    for _ in range(3):  # one waits: what is answered now was queued, and is not counted
        admission.arrive(3.0)
    admission.release(9.0, arrived=3.0)
    admission.release(9.0)  # a waiter's answer carries no arrival
    assert admission.unqueued_s == before


def test_slots_never_hold_fewer_than_the_shop_serves_unqueued() -> None:
    """Checkouts that take 1.25 s unqueued, answered at 16 a second under an overload:
    the slots are 20 (16 x 1.25 s), not 8 (16 x the 0.5 s target), and stay there."""
    admission = Admission(capacity=64, interval_s=1.0, floor=4, target_s=0.5)
    for i in range(20):  # a light load first: each answered 1.25 s after it arrived
        admission.arrive(i * 0.1)
        admission.release(i * 0.1 + 1.25, arrived=i * 0.1)
    assert admission.unqueued_s == pytest.approx(1.25)
    for _ in range(64 + 100):  # then an overload
        admission.arrive(10.0)
    answers(admission, 10.0, 20.0, 1 / 16)
    last = 20.0 - 1 / 16  # the last answer: 16 in the second up to it
    assert admission.standing(last)
    assert admission.slots(last) == 20
    assert admission.in_flight == 20


def test_without_unqueued_answers_the_target_alone_counts() -> None:
    admission = overloaded(capacity=64, floor=4, target_s=0.5)
    answers(admission, 0.0, 3.0, 1 / 16)
    assert admission.unqueued_s == 0.0 and admission.slots(3.0 - 1 / 16) == 8


def test_a_queue_that_empties_gives_back_every_slot() -> None:
    admission = Admission(capacity=8, interval_s=1.0, floor=2, target_s=0.5)
    for _ in range(9):
        admission.arrive(0.0)
    assert admission.slots(2.0) == 2
    now = 2.0
    while admission.waiting:  # answers at 10 a second until the waiter is admitted
        admission.release(now)
        now += 0.1
    assert admission.in_flight < 8 and admission.slots(now) == 8
    assert all(admission.arrive(now).admitted for _ in range(8 - admission.in_flight))
    assert not admission.arrive(now).admitted


@pytest.mark.parametrize(
    "arguments",
    [
        {"capacity": 0},
        {"capacity": 1, "queue_limit": -1},
        {"capacity": 1, "max_wait_s": -1.0},
        {"capacity": 1, "interval_s": 0.0},
        {"capacity": 1, "floor": 0},
        {"capacity": 1, "target_s": 0.0},
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
@given(
    capacity=st.integers(1, 6),
    floor=st.integers(1, 6),
    target_s=st.sampled_from([0.01, 0.1, 0.5, 2.0]),
    queue_limit=st.integers(0, 6),
    steps=steps,
)
def test_every_checkout_is_admitted_refused_or_waiting_and_slots_are_never_exceeded(
    capacity: int, floor: int, target_s: float, queue_limit: int, steps: list[tuple[str, int]]
) -> None:
    admission = Admission(
        capacity, interval_s=1.0, queue_limit=queue_limit, floor=floor, target_s=target_s
    )
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
            running -= 1
            for token in admission.release(now):
                assert token in waiting
                waiting.remove(token)
                finished.add(token)
                running += 1
        elif action == "cancel" and waiting:
            token = waiting.pop(value % len(waiting))
            admission.cancel(token)
            finished.add(token)
        assert admission.in_flight == running <= capacity
        assert admission.waiting == len(waiting) <= queue_limit
        slots = admission.slots(now)
        assert min(floor, capacity) <= slots <= capacity
        assert waiting or slots == capacity  # the rate counts only while a queue stands
        assert not waiting or running >= slots  # nobody waits beside a free slot
