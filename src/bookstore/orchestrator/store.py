"""Finished orders kept in memory for GET /orders/{id} and GET /api/orders.

Bounded: once `capacity` orders are kept, the oldest is evicted. A record
holds what the customer and the cluster view may see — never card data.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

APPROVED = "Order Approved"
REJECTED = "Order Rejected"
ERROR = "Error"


def rfc3339(unix: float) -> str:
    """A unix time as RFC 3339 in UTC with milliseconds ("2026-01-02T03:04:05.678Z")."""
    return (
        datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


@dataclass(frozen=True)
class OrderItem:
    book_id: str
    title: str
    quantity: int


@dataclass
class OrderRecord:
    order_id: str
    status: str  # APPROVED, REJECTED or ERROR
    reason: str | None
    created_at: float
    items: list[OrderItem]
    suggested_books: list[dict[str, str]] = field(default_factory=list)
    vector_clock: list[int] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    cancel_clocks: dict[str, list[int]] | None = None
    clock_errors: list[str] = field(default_factory=list)
    execution: dict[str, Any] | None = None

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
            "suggestedBooks": self.suggested_books,
            "vectorClock": self.vector_clock,
            "events": self.events,
            "cancel": None if self.cancel_clocks is None else {"clocks": self.cancel_clocks},
            "clockErrors": self.clock_errors,
            "execution": self.execution,
        }

    def summary(self) -> dict[str, Any]:
        """One line of GET /api/orders."""
        return {
            "orderId": self.order_id,
            "status": self.status,
            "reason": self.reason,
            "createdAt": rfc3339(self.created_at),
            "books": self.books,
            "execution": self.execution,
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
