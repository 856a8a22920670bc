"""Admission control: a bound on checkouts in flight, and a controlled-delay queue.

A state machine with no clock and no I/O (the caller passes `now`), after Facebook's
"Fail at Scale" (a CoDel queue with adaptive LIFO) and the SRE book's "Handling
Overload": serve every customer the machine can, and refuse only those it cannot
answer in time.

- At most `capacity` checkouts are in flight. One arriving with a slot free is
  admitted at once: a fault that makes checkouts slow (a paused leader, a failover)
  never refuses anybody while slots are free, because latency is not read at all.
- While a queue stands (an overload, below), the slots follow the rate at which
  checkouts finish: as many as finish in `target_s` (Little's law: slots = rate x
  time in the system), at least `floor`, at most `capacity`. A slow machine then
  holds few checkouts in flight, each answered in about `target_s`, instead of
  `capacity` of them each answered in `capacity / rate`. The rate is the answers of
  the last `interval_s`; the slots are never fewer than `floor`, so a light load (or
  a fault under one) never queues on account of them.
- The time in the system is never taken as shorter than a checkout takes when nobody
  waits for a slot (`unqueued_s`: measured continuously, a moving mean over the
  checkouts admitted at once and answered while the line was still empty). Fewer
  slots shorten a checkout only by the time it queues inside the shop; below what it
  takes unqueued they only lower the rate, and a rate that follows the slots pulls
  the slots down with it, to the floor (a machine whose checkouts took 1.3 s with 16
  in flight, and with 45, executed 44% of its 50-client rate so). With the longer of
  the two, the slots stay where the shop's rate was made: as many as it serves
  without a line.
- Otherwise it waits for a slot, at most `max_wait_s`: that is its deadline. A
  checkout still waiting then is refused (503 BUSY with Retry-After): it could not
  have been answered in time.
- A queue that empties is a burst: served first come, first served, so a class of
  students pressing "buy" together is served in full. A queue that has not been empty
  for `interval_s` is standing: an overload. It is then served newest first
  (adaptive LIFO), so the checkouts admitted wait little, and those waiting longest,
  whose customers have likely given up, are the ones the deadline refuses. A client
  that honours Retry-After comes back as the newest, and is served first.
- The queue holds at most `queue_limit` checkouts. A newcomer to a full queue is
  refused at once while it is served in order; under an overload the oldest waiter
  is refused instead, to make room for the newcomer.

Each waiter is a token (an int the caller keeps with what it waits on); `arrive`,
`release` and `cancel` say which tokens are admitted or refused.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

UNQUEUED_WEIGHT = 0.05  # each unqueued answer's weight in the moving mean (about 20 answers)


@dataclass(frozen=True)
class Arrival:
    """What `arrive` decided: admitted now, or waiting as `token`; and the tokens of
    waiters refused to make room (under an overload, the oldest)."""

    admitted: bool
    token: int | None = None  # waiting as this token; None and not admitted: refused
    refused: tuple[int, ...] = field(default=())

    @property
    def waiting(self) -> bool:
        return self.token is not None


class Admission:
    def __init__(
        self,
        capacity: int,
        max_wait_s: float = 3.0,
        interval_s: float = 1.0,
        queue_limit: int = 1024,
        floor: int = 16,
        target_s: float = 0.5,
    ) -> None:
        if capacity < 1 or queue_limit < 0 or max_wait_s < 0 or interval_s <= 0:
            raise ValueError("capacity >= 1, queue_limit >= 0, max_wait_s >= 0, interval_s > 0")
        if floor < 1 or target_s <= 0:
            raise ValueError("floor >= 1, target_s > 0")
        self.capacity = capacity
        self.floor = min(floor, capacity)
        self.target_s = target_s
        self.max_wait_s = max_wait_s
        self.interval_s = interval_s
        self.queue_limit = queue_limit
        self.in_flight = 0
        self._arrived: dict[int, float] = {}  # waiting token -> when it arrived
        self._order: deque[int] = deque()  # waiting tokens, oldest first (and some gone)
        self._next_token = 0
        self._busy_since: float | None = None  # when the queue last stopped being empty
        self._answered: deque[float] = deque()  # when checkouts were released, last interval
        self.unqueued_s = 0.0  # a checkout's time in the shop with nobody waiting (moving mean)
        self._timed = False  # whether unqueued_s has had an answer yet

    @property
    def waiting(self) -> int:
        return len(self._arrived)

    def standing(self, now: float) -> bool:
        """Whether the queue has not been empty for `interval_s`: an overload."""
        return self._busy_since is not None and now - self._busy_since >= self.interval_s

    def slots(self, now: float) -> int:
        """Checkouts allowed in flight: `capacity`, or while the queue stands, as many
        as finish in `target_s` at the rate of the last `interval_s` (within bounds)."""
        if not self.standing(now):
            return self.capacity
        self._forget(now)
        rate = len(self._answered) / self.interval_s
        in_system_s = max(self.target_s, self.unqueued_s)
        return max(self.floor, min(self.capacity, int(rate * in_system_s)))

    def arrive(self, now: float) -> Arrival:
        """A checkout arrives: admitted, waiting, or refused."""
        if self.in_flight < self.capacity and not self._arrived:
            self.in_flight += 1
            return Arrival(admitted=True)
        refused: tuple[int, ...] = ()
        if len(self._arrived) >= self.queue_limit:
            if self.queue_limit == 0 or not self.standing(now):
                return Arrival(admitted=False)
            refused = (self._pop(oldest=True),)
        token = self._next_token
        self._next_token += 1
        if self._busy_since is None:
            self._busy_since = now
        self._arrived[token] = now
        self._order.append(token)
        return Arrival(admitted=False, token=token, refused=refused)

    def release(self, now: float, arrived: float | None = None) -> tuple[int, ...]:
        """An admitted checkout was answered: the tokens admitted now (none, one, or
        several when the slots have grown with the rate). `arrived`: when it arrived,
        if it was admitted at once (it joins `unqueued_s` if nobody waits now either)."""
        self.in_flight -= 1
        self._answered.append(now)
        if arrived is not None and not self._arrived:
            self._time_unqueued(max(0.0, now - arrived))
        self._forget(now)
        admitted: list[int] = []
        while self._arrived and self.in_flight < self.slots(now):
            admitted.append(self._pop(oldest=not self.standing(now)))
            self.in_flight += 1
        return tuple(admitted)

    def cancel(self, token: int) -> None:
        """Waiter `token` leaves the queue (its deadline passed, or its client left)."""
        if self._arrived.pop(token, None) is not None:
            self._trim()

    def _time_unqueued(self, took: float) -> None:
        weight = UNQUEUED_WEIGHT if self._timed else 1.0
        self.unqueued_s += weight * (took - self.unqueued_s)
        self._timed = True

    def _forget(self, now: float) -> None:
        """Answers older than `interval_s` leave the rate."""
        while self._answered and self._answered[0] <= now - self.interval_s:
            self._answered.popleft()

    def _pop(self, oldest: bool) -> int:
        token = self._order.popleft() if oldest else self._order.pop()
        del self._arrived[token]
        self._trim()
        return token

    def _trim(self) -> None:
        """Tokens gone from either end leave the order; an empty queue is noted."""
        while self._order and self._order[0] not in self._arrived:
            self._order.popleft()
        while self._order and self._order[-1] not in self._arrived:
            self._order.pop()
        if not self._arrived:
            self._busy_since = None
