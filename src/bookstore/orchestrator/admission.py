"""Admission control: how many checkouts may be in flight, following their latency.

A state machine with no clock and no I/O (the caller passes `now`), in the spirit of
TCP's congestion control and Netflix's concurrency-limits (Vegas, gradient). The
latency that counts is a whole checkout's, request to answer, waiting for the
execution included: what the customer waits, and what must stay bounded.

- Admit a checkout while fewer than `limit` are in flight; refuse it otherwise.
- Only approved checkouts are latency samples. An invalid request or a rejected
  order takes another path and time, and a replayed answer took none. An admitted
  checkout answered 503 (a service down or too slow: the checkout timed out) is a
  *drop*, as a lost packet is to TCP: no latency, but a reason to fall. Without it
  an overload that times every checkout out would leave the limit blind.
- The no-load latency is the least latency of the checkouts admitted with at most
  `floor` in flight, over the last `window_s` (kept as two halves, so it can rise
  once the older half's least leaves it). Checkouts admitted under more load do
  not feed it: their least latency creeps up with the load itself, and a no-load
  estimate that followed it would let the limit grow without end.
- A round is the answers (samples and drops) of the checkouts admitted since the
  last decision: a checkout admitted earlier ran under another limit.
- With `target` = tolerance x the no-load latency, a round calls for a fall when
  its mean latency is above the target (by target / mean) or it has drops (by the
  share of answers that were not drops); the smaller, but at most halving.
- A fall is decided as soon as the round has `floor` answers and calls for one (as
  TCP does not wait for the window's end to react to a loss). Otherwise the round
  ends with `limit` answers, and the limit grows by one if a checkout of the round
  found it reached (doubles in slow start, which lasts until the first fall).
- The limit stays within [floor, ceiling]; it starts at the floor.
- Not adaptive: the limit is the ceiling, always.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_FALL = 0.5  # a round lowers the limit to no less than half


@dataclass(frozen=True)
class Ticket:
    """An admitted checkout: the round it was admitted in, and whether at low load."""

    round: int
    low_load: bool


class AdaptiveLimit:
    def __init__(
        self,
        ceiling: int,
        floor: int = 4,
        tolerance: float = 20.0,
        window_s: float = 60.0,
        adaptive: bool = True,
    ) -> None:
        if tolerance < 1 or window_s <= 0:
            raise ValueError("tolerance must be at least 1 and window_s positive")
        self.ceiling = max(0, ceiling)
        self.floor = min(max(1, floor), self.ceiling)
        self.tolerance = tolerance
        self.window_s = window_s
        self.adaptive = adaptive
        self.in_flight = 0
        self._limit = float(self.floor if adaptive else self.ceiling)
        self._slow_start = True
        self._round = 0
        self._samples = 0
        self._sum_s = 0.0
        self._drops = 0
        self._reached = False
        # The no-load latency: the least of the current and the previous half-window.
        self._half_start = -math.inf
        self._least_now = math.inf
        self._least_before = math.inf

    @property
    def limit(self) -> int:
        return int(self._limit)

    @property
    def no_load_s(self) -> float | None:
        """The no-load latency estimate; None before the first low-load sample."""
        least = min(self._least_now, self._least_before)
        return None if least == math.inf else least

    def admit(self) -> Ticket | None:
        """A ticket for a checkout let in, or None: refuse it (503)."""
        if self.in_flight >= self.limit:
            self._reached = True
            return None
        ticket = Ticket(self._round, self.in_flight < self.floor)
        self.in_flight += 1
        if self.in_flight >= self.limit:
            self._reached = True
        return ticket

    def note_refused(self) -> None:
        """A checkout was refused elsewhere (the gate) by this limit: it was reached."""
        self._reached = True

    def done(
        self, ticket: Ticket, now: float, latency_s: float | None, dropped: bool = False
    ) -> None:
        """The checkout of `ticket` was answered: a sample (`latency_s`), a drop, or
        neither (`latency_s` None, not dropped)."""
        self.in_flight -= 1
        if not self.adaptive or (latency_s is None and not dropped):
            return
        if latency_s is not None and ticket.low_load:
            self._see_no_load(now, latency_s)
        if ticket.round != self._round:
            return
        if latency_s is None:
            self._drops += 1
        else:
            self._samples += 1
            self._sum_s += latency_s
        answers = self._samples + self._drops
        fall = self._fall()
        if fall < 1 and answers >= self.floor:
            self._slow_start = False
            self._next_round(self._limit * fall)
        elif answers >= self.limit:
            grown = self._limit * 2 if self._slow_start else self._limit + 1
            self._next_round(grown if self._reached else self._limit)

    def _see_no_load(self, now: float, latency_s: float) -> None:
        if now - self._half_start >= self.window_s / 2:
            self._least_before, self._least_now = self._least_now, latency_s
            self._half_start = now
        else:
            self._least_now = min(self._least_now, latency_s)

    def _fall(self) -> float:
        """The factor the round so far calls for (1: none)."""
        factor = 1.0 - self._drops / (self._samples + self._drops)
        no_load = self.no_load_s
        if self._samples and no_load is not None:
            factor = min(factor, self.tolerance * no_load / (self._sum_s / self._samples))
        return 1.0 if factor >= 1 else max(MAX_FALL, factor)

    def _next_round(self, limit: float) -> None:
        self._limit = min(float(self.ceiling), max(float(self.floor), limit))
        self._round += 1
        self._samples = 0
        self._sum_s = 0.0
        self._drops = 0
        self._reached = False
