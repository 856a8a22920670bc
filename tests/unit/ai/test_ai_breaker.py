"""The circuit breaker, driven by fake time."""

from __future__ import annotations

from bookstore.ai.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_stays_closed_below_the_threshold() -> None:
    breaker = CircuitBreaker(failures=3, cooldown_s=10, now=Clock())
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == "closed"
    assert breaker.allow()


def test_opens_after_consecutive_failures_and_refuses_calls() -> None:
    breaker = CircuitBreaker(failures=3, cooldown_s=10, now=Clock())
    for _ in range(3):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state == "open"
    assert not breaker.allow()


def test_a_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker(failures=3, cooldown_s=10, now=Clock())
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == "closed"


def test_half_open_after_the_cooldown_lets_exactly_one_probe_through() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=1, cooldown_s=10, now=clock)
    breaker.record_failure()
    clock.now += 9.9
    assert not breaker.allow()
    clock.now += 0.2
    assert breaker.state == "half-open"
    assert breaker.allow()
    assert not breaker.allow()  # the probe is out


def test_a_successful_probe_closes_the_circuit() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=1, cooldown_s=10, now=clock)
    breaker.record_failure()
    clock.now += 10
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed"
    assert breaker.allow()
    assert breaker.allow()


def test_a_failed_probe_opens_the_circuit_for_another_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=2, cooldown_s=10, now=clock)
    breaker.record_failure()
    breaker.record_failure()
    clock.now += 10
    assert breaker.allow()
    breaker.record_failure()  # one failure is enough in half-open
    assert breaker.state == "open"
    clock.now += 9
    assert not breaker.allow()
    clock.now += 1
    assert breaker.allow()


def test_a_released_probe_lets_the_next_call_probe() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=1, cooldown_s=10, now=clock)
    breaker.record_failure()
    clock.now += 10
    assert breaker.allow()
    breaker.release()
    assert breaker.allow()
