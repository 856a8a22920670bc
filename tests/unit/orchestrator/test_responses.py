"""The JSON shapes of the orders."""

from __future__ import annotations

from bookstore.orchestrator.responses import order_json, order_line_json
from bookstore.orchestrator.store import APPROVED, OrderItem, OrderRecord


def test_record_json_counts_books_and_formats_times() -> None:
    record = OrderRecord("o0", APPROVED, None, 1_700_000_000.0, (OrderItem("b001", "T", 2),))
    assert order_line_json(record)["books"] == 2
    assert order_json(record)["createdAt"] == "2023-11-14T22:13:20.000Z"
