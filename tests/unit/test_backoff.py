from __future__ import annotations

import asyncio

import pytest

from bookstore.backoff import Backoff, reconnect


def test_delays_double_up_to_the_cap_without_jitter() -> None:
    backoff = Backoff(0.05, 1.0, jitter=0)
    assert [backoff.next() for _ in range(7)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_reset_starts_again_from_the_minimum() -> None:
    backoff = Backoff(0.5, 10.0, jitter=0)
    backoff.next()
    backoff.next()
    backoff.reset()
    assert backoff.next() == 0.5


def test_jitter_shortens_a_delay_but_never_below_the_minimum() -> None:
    low = Backoff(0.1, 1.0, jitter=0.5, rng=lambda: 1.0)
    assert [low.next() for _ in range(3)] == [0.1, 0.1, 0.2]
    high = Backoff(0.1, 1.0, jitter=0.5, rng=lambda: 0.0)
    assert [high.next() for _ in range(3)] == [0.1, 0.2, 0.4]


@pytest.mark.parametrize(("min_s", "max_s", "jitter"), [(0, 1, 0), (2, 1, 0), (0.1, 1, 1)])
def test_nonsense_bounds_are_refused(min_s: float, max_s: float, jitter: float) -> None:
    with pytest.raises(ValueError):
        Backoff(min_s, max_s, jitter=jitter)


async def test_reconnect_backs_off_after_failures_and_resets_after_a_success() -> None:
    outcomes = iter([False, False, True, False, False])
    runs = 0
    slept: list[float] = []

    async def session() -> bool:
        nonlocal runs
        runs += 1
        return next(outcomes)

    async def sleep(delay: float) -> None:
        slept.append(delay)

    await reconnect(session, Backoff(1, 8, jitter=0), stopped=lambda: runs == 5, sleep=sleep)
    assert runs == 5
    assert slept == [1, 2, 1, 2]


async def test_reconnect_stops_when_cancelled_while_backing_off() -> None:
    sleeping = asyncio.Event()

    async def session() -> bool:
        return False

    async def sleep(delay: float) -> None:
        sleeping.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(reconnect(session, Backoff(1, 2), sleep=sleep))
    await sleeping.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
