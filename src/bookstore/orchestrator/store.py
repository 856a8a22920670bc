"""Finished orders kept in memory for GET /orders/{id} and GET /api/orders.

Bounded: once `capacity` orders are kept, the oldest is evicted. Records are
compact (tuples and interned names, JSON built only when asked for), so the
default 10,000 orders cost a few MB. A record holds what the customer and the
cluster view may see — never card data.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bookstore.orchestrator.execution import ExecutionInfo
from bookstore.orchestrator.flow import EventRecord, Suggestion

APPROVED = "Order Approved"
REJECTED = "Order Rejected"
ERROR = "Error"
QUEUED = ExecutionInfo("queued")

# (event, name, service, clock, ok, reason, answered by, unix time, duration in ms)
Event = tuple[str, str, str, tuple[int, ...], bool, str, str, float, float]
Book = tuple[str, str, str]  # (book id, title, author)


def rfc3339(unix: float) -> str:
    """A unix time as RFC 3339 in UTC with milliseconds ("2026-01-02T03:04:05.678Z")."""
    return (
        datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


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


def compact_book(b: Suggestion) -> Book:
    return (sys.intern(b.book_id), sys.intern(b.title), sys.intern(b.author))


def event_json(e: Event) -> dict[str, Any]:
    return {
        "event": e[0],
        "name": e[1],
        "service": e[2],
        "clock": list(e[3]),
        "ok": e[4],
        "reason": e[5],
        "answeredBy": e[6],
        "at": rfc3339(e[7]),
        "durationMs": e[8],
    }


def books_json(books: tuple[Book, ...]) -> list[dict[str, str]]:
    return [{"bookId": b[0], "title": b[1], "author": b[2]} for b in books]


def execution_json(info: ExecutionInfo | None) -> dict[str, Any] | None:
    if info is None:
        return None
    if info.state == "queued" and info.executor is None:
        return {"state": "queued"}
    return {
        "state": info.state,
        "executor": info.executor,
        "epoch": info.epoch,
        "sequence": info.sequence,
        "executedAt": info.executed_at,
    }


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
    suggested_books: tuple[Book, ...] = ()
    vector_clock: tuple[int, ...] | None = None
    events: tuple[Event, ...] = ()
    cancel_clocks: dict[str, tuple[int, ...]] | None = None
    clock_errors: tuple[str, ...] = ()
    execution: ExecutionInfo | None = None

    @property
    def books(self) -> int:
        return sum(item.quantity for item in self.items)

    def to_json(self) -> dict[str, Any]:
        """The GET /orders/{id} body."""
        return {
            "orderId": self.order_id,
            "status": self.status,
            "reason": self.reason,
            "createdAt": rfc3339(self.created_at),
            "items": [
                {"bookId": i.book_id, "title": i.title, "quantity": i.quantity} for i in self.items
            ],
            "suggestedBooks": books_json(self.suggested_books),
            "vectorClock": None if self.vector_clock is None else list(self.vector_clock),
            "events": [event_json(e) for e in self.events],
            "cancel": None
            if self.cancel_clocks is None
            else {"clocks": {s: list(c) for s, c in self.cancel_clocks.items()}},
            "clockErrors": list(self.clock_errors),
            "execution": execution_json(self.execution),
        }

    def summary(self) -> dict[str, Any]:
        """One line of GET /api/orders."""
        return {
            "orderId": self.order_id,
            "status": self.status,
            "reason": self.reason,
            "createdAt": rfc3339(self.created_at),
            "books": self.books,
            "execution": execution_json(self.execution),
        }


class OrderStore:
    """At most `capacity` records, oldest evicted first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._orders: OrderedDict[str, OrderRecord] = OrderedDict()

    def __len__(self) -> int:
        return len(self._orders)

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._orders

    def put(self, record: OrderRecord) -> None:
        self._orders[record.order_id] = record
        self._orders.move_to_end(record.order_id)
        while len(self._orders) > self.capacity:
            self._orders.popitem(last=False)

    def get(self, order_id: str) -> OrderRecord | None:
        return self._orders.get(order_id)

    def recent(self, limit: int) -> list[OrderRecord]:
        """The newest `limit` records, newest first."""
        result: list[OrderRecord] = []
        for record in reversed(self._orders.values()):
            if len(result) >= limit:
                break
            result.append(record)
        return result
