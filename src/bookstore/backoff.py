"""Reconnect with back-off: the one loop every long-lived stream and child process uses.

A session (open a stream and pump it, or run a child) is started again after each
end; between two starts the loop waits a delay that doubles from `min_s` up to
`max_s`, with jitter so peers that lost the same server do not return in step.
A session that reports success (it connected, or stayed up long enough) resets
the delay. The loop ends when `stopped()` says so or its task is cancelled
(`cancelled(task)` cancels a loop and waits for its end).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any


class Backoff:
    """Delays that double from `min_s` to `max_s`, each scaled down by up to `jitter`.

    With `jitter` 0.25 a delay of 1 s becomes a value in [0.75, 1] s, never below
    `min_s`; `jitter` 0 gives the plain doubling sequence.
    """

    def __init__(
        self,
        min_s: float,
        max_s: float,
        *,
        jitter: float = 0.25,
        rng: Callable[[], float] = random.random,
        immediate_first: bool = False,
    ) -> None:
        if not 0 < min_s <= max_s:
            raise ValueError(f"back-off needs 0 < min_s <= max_s, got {min_s}, {max_s}")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        self.min_s = min_s
        self.max_s = max_s
        self.jitter = jitter
        self._rng = rng
        self._current = min_s
        # The first attempt after a reset goes at once (no outage to wait out yet).
        self.immediate_first = immediate_first
        self._fresh = immediate_first

    def next(self) -> float:
        """The delay before the next attempt; the one after will be twice as long."""
        if self._fresh:
            self._fresh = False
            return 0.0
        base = self._current
        self._current = min(self.max_s, base * 2)
        return max(self.min_s, base * (1 - self.jitter * self._rng()))

    def reset(self) -> None:
        """Start again from `min_s` (the last session went well)."""
        self._current = self.min_s
        self._fresh = self.immediate_first


async def reconnect(
    session: Callable[[], Awaitable[bool]],
    backoff: Backoff,
    *,
    stopped: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Run `session` again and again, backing off between runs, until `stopped()`.

    `session` handles its own errors and returns True when it went well enough
    that the next failure starts a fresh outage (the back-off is reset). Cancel
    the task running this to stop at once.
    """
    while not stopped():
        if await session():
            backoff.reset()
        if stopped():
            return
        await sleep(backoff.next())


async def cancelled(task: asyncio.Task[Any] | None) -> None:
    """Cancel a loop's task (None: there is none) and wait until it has ended."""
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
