"""Vector clocks over the three checkout services.

A clock is an immutable tuple of counters in the fixed order
[transaction-verification, fraud-detection, suggestions]. A local event
increments the owner's entry; receiving a peer's clock merges it
(element-wise max) without an increment, so each entry counts exactly the
events its service ran, and the final clock is the element-wise max of
every clock the services reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from bookstore.pb import common_pb2
from bookstore.settings import CHECKOUT_SERVICES

Clock = tuple[int, ...]
SIZE = len(CHECKOUT_SERVICES)
ZERO: Clock = (0,) * SIZE


def index_of(service: str) -> int:
    return CHECKOUT_SERVICES.index(service)


def tick(clock: Clock, service: str) -> Clock:
    """The clock after a local event of `service`."""
    i = index_of(service)
    return (*clock[:i], clock[i] + 1, *clock[i + 1 :])


def merge(a: Clock, b: Clock) -> Clock:
    """Element-wise max: commutative, associative, idempotent."""
    return tuple(max(x, y) for x, y in zip(a, b, strict=True))


def merge_all(clocks: Iterable[Clock]) -> Clock:
    result = ZERO
    for c in clocks:
        result = merge(result, c)
    return result


def leq(a: Clock, b: Clock) -> bool:
    """a <= b: every entry of a is at most the same entry of b."""
    return all(x <= y for x, y in zip(a, b, strict=True))


def happened_before(a: Clock, b: Clock) -> bool:
    """a -> b: a <= b and a != b."""
    return a != b and leq(a, b)


def from_pb(msg: common_pb2.VectorClock) -> Clock:
    entries = tuple(int(x) for x in msg.entries)
    if len(entries) != SIZE:
        raise ValueError(f"vector clock has {len(entries)} entries, expected {SIZE}")
    return entries


def to_pb(clock: Sequence[int]) -> common_pb2.VectorClock:
    return common_pb2.VectorClock(entries=list(clock))


def fmt(clock: Sequence[int]) -> str:
    return "[" + ",".join(str(x) for x in clock) + "]"
