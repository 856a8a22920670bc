"""Finished orders kept in memory for GET /orders/{id} and GET /api/orders.

Bounded: once `capacity` orders are kept, the oldest is evicted. Records are
compact (tuples and interned names; their JSON is built in `responses` only when
asked for), so the default 10,000 orders cost a few MB. A record holds what the
customer and the cluster view may see — never card data.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from bookstore.bounded import BoundedMapping
from bookstore.orchestrator.execution import ExecutionInfo
from bookstore.orchestrator.flow import EventRecord, Outcome, Suggestion

APPROVED = "Order Approved"
REJECTED = "Order Rejected"
ERROR = "Error"
QUEUED = ExecutionInfo("queued")

# (event, name, service, clock, ok, reason, answered by, unix time, duration in ms)
Event = tuple[str, str, str, tuple[int, ...], bool, str, str, float, float]
BookRef = tuple[str, str, str]  # (book id, title, author)


def compact_event(e: EventRecord) -> Event:
    intern = sys.intern
    return (
        intern(e.event),
        intern(e.name),
        intern(e.service),
        tuple(e.clock),
        e.ok,
        intern(e.reason) if len(e.reason) < 200 else e.reason,
        intern(e.answered_by),
        e.at,
        e.duration_ms,
    )


def compact_book(b: Suggestion) -> BookRef:
    return (sys.intern(b.book_id), sys.intern(b.title), sys.intern(b.author))


@dataclass(frozen=True, slots=True)
class OrderItem:
    book_id: str
    title: str
    quantity: int


@dataclass(slots=True)
class OrderRecord:
    order_id: str
    status: str  # APPROVED, REJECTED or ERROR
    reason: str | None
    created_at: float
    items: tuple[OrderItem, ...]
    suggested_books: tuple[BookRef, ...] = ()
    vector_clock: tuple[int, ...] | None = None
    events: tuple[Event, ...] = ()
    cancel_clocks: dict[str, tuple[int, ...]] | None = None
    clock_errors: tuple[str, ...] = ()
    execution: ExecutionInfo | None = None

    @property
    def books(self) -> int:
        return sum(item.quantity for item in self.items)


def checked_record(
    order_id: str, created: float, items: tuple[OrderItem, ...], outcome: Outcome
) -> OrderRecord:
    """The record of an order the checkout services decided on."""
    approved = outcome.approved
    return OrderRecord(
        order_id=order_id,
        status=APPROVED if approved else REJECTED,
        reason=None if approved else outcome.reason,
        created_at=created,
        items=items,
        suggested_books=tuple(compact_book(b) for b in outcome.suggestions) if approved else (),
        vector_clock=None if outcome.final_clock is None else tuple(outcome.final_clock),
        events=tuple(compact_event(e) for e in outcome.events),
        cancel_clocks={s: tuple(c) for s, c in outcome.cancel_clocks.items()}
        if outcome.cancel_clocks
        else None,
        clock_errors=tuple(outcome.clock_errors),
    )


def awaiting_execution(record: OrderRecord) -> bool:
    """Approved and not known to be executed yet."""
    execution = record.execution
    return record.status == APPROVED and (execution is None or not execution.finished)


def apply_execution(record: OrderRecord, info: ExecutionInfo) -> None:
    """What the queue said of the order; a rejection at execution rejects the order."""
    record.execution = info
    if info.state == "rejected":
        record.status, record.reason, record.suggested_books = REJECTED, info.reason, ()


class OrderStore:
    """At most `capacity` records, oldest evicted first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._orders: BoundedMapping[str, OrderRecord] = BoundedMapping(self.capacity)

    def __len__(self) -> int:
        return len(self._orders)

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._orders

    def put(self, record: OrderRecord) -> None:
        self._orders[record.order_id] = record

    def get(self, order_id: str) -> OrderRecord | None:
        return self._orders.get(order_id)

    def recent(self, limit: int) -> list[OrderRecord]:
        """The newest `limit` records, newest first."""
        if limit < 1:
            return []
        newest = list(self._orders.values())[-limit:]
        newest.reverse()
        return newest
