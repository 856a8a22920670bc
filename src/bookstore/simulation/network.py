"""Messages between named processes: delay, drop, duplication, reordering and
partitions that heal, all drawn from the scheduler's random source.

Links marked `streams` (the checkout choreography's gRPC streams) keep their
order, as TCP does: a message is never delivered before an earlier one on the
same link. Every other message may be dropped, duplicated or reordered while a
message fault is active; the protocols behind them resend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bookstore.simulation.scheduler import Scheduler

BASE_DELAY = 0.001
JITTER = 0.004


@dataclass
class MessageFault:
    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0  # extra delay up to this many seconds


class Network:
    def __init__(
        self,
        sched: Scheduler,
        deliver: Callable[[tuple[str, str, Any]], None],
        streams: frozenset[str],
    ) -> None:
        self.sched = sched
        self._deliver = deliver
        self.streams = streams  # processes whose links are ordered streams
        self.fault: MessageFault | None = None
        self.slow: dict[str, float] = {}  # process -> extra delay on its stream links
        self.isolated: set[str] = set()  # cut off from every other process
        self._last: dict[tuple[str, str], float] = {}
        self.sent = 0
        self.dropped = 0

    def send(self, src: str, dst: str, payload: tuple[Any, ...]) -> None:
        self.sent += 1
        if src in self.isolated or dst in self.isolated:
            self.dropped += 1
            return
        rng = self.sched.rng
        label = f"{src}>{dst} {payload[0]} {_detail(payload)}"
        delay = BASE_DELAY + JITTER * rng.random()
        if src in self.streams and dst in self.streams:
            delay += self.slow.get(src, 0.0) + self.slow.get(dst, 0.0)
            link = (src, dst)
            when = max(self.sched.now + delay, self._last.get(link, 0.0))
            self._last[link] = when
            self.sched.at(when, self._deliver, (src, dst, payload), label)
            return
        fault = self.fault
        copies = 1
        if fault is not None:
            if rng.random() < fault.drop:
                self.dropped += 1
                return
            if rng.random() < fault.duplicate:
                copies = 2
            delay += fault.reorder * rng.random()
        for _ in range(copies):
            self.sched.after(delay, self._deliver, (src, dst, payload), label)
            delay += JITTER * rng.random()


def _detail(payload: tuple[Any, ...]) -> str:
    """The order id, or the protocol message's kind."""
    second = payload[1] if len(payload) > 1 else ""
    if isinstance(second, str):
        return second
    order_id = getattr(second, "order_id", None)
    if isinstance(order_id, str):
        return order_id
    kind = getattr(second, "kind", None)  # a Bully message
    return kind.name if kind is not None else type(second).__name__
