"""One seeded random source, a simulated clock and an event heap.

Ties are broken by a sequence number, so the same seed runs the same events in
the same order. Every event run is recorded in the trace (a short line); the
trace's hash fingerprints the run.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable
from typing import Any

Handler = Callable[[Any], None]


class Scheduler:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.now = 0.0
        self.steps = 0
        self._trace: list[tuple[float, str]] = []
        self._heap: list[tuple[float, int, Handler, Any, str]] = []
        self._seq = 0

    def at(self, when: float, fn: Handler, arg: Any = None, label: str = "") -> None:
        """Run `fn(arg)` at simulated time `when` (never in the past)."""
        self._seq += 1
        if when < self.now:
            when = self.now
        heapq.heappush(self._heap, (when, self._seq, fn, arg, label))

    def after(self, delay: float, fn: Handler, arg: Any = None, label: str = "") -> None:
        self._seq += 1
        heapq.heappush(self._heap, (self.now + delay, self._seq, fn, arg, label))

    def step(self) -> bool:
        """Run the next event; False when there is none."""
        if not self._heap:
            return False
        when, _, fn, arg, label = heapq.heappop(self._heap)
        self.now = when
        self.steps += 1
        if label:
            self._trace.append((when, label))
        fn(arg)
        return True

    @property
    def trace(self) -> list[str]:
        """The events run so far, one line each: the time and what happened."""
        return [f"{when:.6f} {label}" for when, label in self._trace]


def trace_hash(trace: list[str]) -> str:
    return hashlib.sha256("\n".join(trace).encode()).hexdigest()[:16]
