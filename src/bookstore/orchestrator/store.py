"""Finished orders kept in memory for GET /orders/{id} and GET /api/orders.

Bounded: once `capacity` orders, or records of about `max_bytes` in all, are kept,
the oldest is evicted (the input limits keep one record small, but a byte bound
holds whatever the records carry). Records are
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
    return record.status == APPROVED and (execution is None or execution.state != "executed")


def record_size(order_id: str, record: OrderRecord) -> int:
    """An estimate of a record's memory in bytes: the text it holds and a fixed part."""
    text = len(order_id) + len(record.reason or "")
    text += sum(len(i.book_id) + len(i.title) + 64 for i in record.items)
    text += sum(len(e[5]) + 16 * len(e[3]) + 160 for e in record.events)
    text += sum(len(error) for error in record.clock_errors)
    return 512 + text + 24 * len(record.suggested_books)


class OrderStore:
    """At most `capacity` records and about `max_bytes` of them, oldest evicted first."""

    def __init__(self, capacity: int, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.capacity = max(1, capacity)
        self._orders: BoundedMapping[str, OrderRecord] = BoundedMapping(
            self.capacity, size_of=record_size, max_bytes=max(1, max_bytes)
        )

    @property
    def bytes(self) -> int:
        """The estimated bytes of the records kept."""
        return self._orders.bytes

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
