"""A circuit breaker, so an AI outage costs customers nothing.

Rules:
- closed: calls go through; `failures` consecutive failures open the circuit.
- open: no call goes through until `cooldown_s` has passed since it opened.
- half-open: after the cool-down, exactly one call (the probe) goes through;
  its success closes the circuit, its failure opens it again for another
  cool-down. Other calls are refused while the probe is out.
- Any success resets the failure count.

The breaker holds no clock of its own: `now` is passed in (time.monotonic by
default), so tests drive it with fake time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half-open"]


class CircuitBreaker:
    def __init__(
        self,
        failures: int,
        cooldown_s: float,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = max(1, failures)
        self.cooldown_s = cooldown_s
        self._now = now
        self._state: State = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probe_out = False

    @property
    def state(self) -> State:
        if self._state == "open" and self._now() - self._opened_at >= self.cooldown_s:
            return "half-open"
        return self._state

    def allow(self) -> bool:
        """May a call go through now? (In half-open, True once: the probe.)"""
        state = self.state
        if state == "closed":
            return True
        if state == "open" or self._probe_out:
            return False
        self._state = "half-open"
        self._probe_out = True
        return True

    def record_success(self) -> None:
        self._state = "closed"
        self._failures = 0
        self._probe_out = False

    def record_failure(self) -> None:
        self._failures += 1
        if self._state == "half-open" or self._failures >= self.threshold:
            self._state = "open"
            self._opened_at = self._now()
        self._probe_out = False

    def release(self) -> None:
        """The call that was allowed ended without a verdict on the AI."""
        self._probe_out = False
