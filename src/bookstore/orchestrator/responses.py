"""Every JSON body of the checkout, the books and the orders, built in this one module.

Routes hand over typed values (order records, the catalogue's books) and get the JSON
back; the keys and their order are the HTTP API (README's "HTTP API"; the pages and the
course page read them). Error bodies are in `errors`; the cluster view's bodies in
`bookstore.cluster_view.responses`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bookstore.catalogue import Book
from bookstore.orchestrator.execution import ExecutionInfo
from bookstore.orchestrator.store import APPROVED, REJECTED, BookRef, Event, OrderRecord
from bookstore.timestamps import utc_iso

JSON = dict[str, Any]


def _clock(clock: tuple[int, ...] | None) -> list[int] | None:
    return None if clock is None else list(clock)


def book_json(book: Book, available: Mapping[str, int] | None) -> JSON:
    """One book of GET /api/books; `available`: the database's copies by book id (None:
    the database did not answer, so "stock" is null and "stockKnown" false)."""
    stock = None if available is None else available.get(book.book_id)
    return {
        "bookId": book.book_id,
        "title": book.title,
        "author": book.author,
        "genre": book.genre,
        "price": book.price,
        "stock": stock,
        "stockKnown": stock is not None,
    }


def books_json(books: tuple[BookRef, ...]) -> list[dict[str, str]]:
    return [{"bookId": b[0], "title": b[1], "author": b[2]} for b in books]


def execution_json(info: ExecutionInfo | None) -> JSON | None:
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


def payment_json(info: ExecutionInfo | None) -> JSON | None:
    """The captured payment of an executed order (None before, or without payment)."""
    if info is None or info.state != "executed" or not info.amount_cents:
        return None
    cents = info.amount_cents
    return {
        "state": "captured",
        "amount": f"{cents // 100}.{cents % 100:02d}",
        "amountCents": cents,
        "currency": info.currency or "EUR",
    }


def event_json(e: Event) -> JSON:
    return {
        "event": e[0],
        "name": e[1],
        "service": e[2],
        "clock": list(e[3]),
        "ok": e[4],
        "reason": e[5],
        "answeredBy": e[6],
        "at": utc_iso(e[7]),
        "durationMs": e[8],
    }


def order_json(record: OrderRecord) -> JSON:
    """The GET /orders/{id} body."""
    cancel = record.cancel_clocks
    return {
        "orderId": record.order_id,
        "status": record.status,
        "reason": record.reason,
        "createdAt": utc_iso(record.created_at),
        "items": [
            {"bookId": i.book_id, "title": i.title, "quantity": i.quantity} for i in record.items
        ],
        "suggestedBooks": books_json(record.suggested_books),
        "vectorClock": _clock(record.vector_clock),
        "events": [event_json(e) for e in record.events],
        "cancel": None if cancel is None else {"clocks": {s: list(c) for s, c in cancel.items()}},
        "clockErrors": list(record.clock_errors),
        "execution": execution_json(record.execution),
        "payment": payment_json(record.execution),
    }


def order_line_json(record: OrderRecord) -> JSON:
    """One line of GET /api/orders."""
    return {
        "orderId": record.order_id,
        "status": record.status,
        "reason": record.reason,
        "createdAt": utc_iso(record.created_at),
        "books": record.books,
        "execution": execution_json(record.execution),
    }


def checkout_json(record: OrderRecord) -> JSON:
    """The 200 body of POST /checkout: "Order Approved" or "Order Rejected"."""
    if record.status == APPROVED:
        return {
            "orderId": record.order_id,
            "status": APPROVED,
            "suggestedBooks": books_json(record.suggested_books),
            "vectorClock": _clock(record.vector_clock),
            "execution": execution_json(record.execution),
            "payment": payment_json(record.execution),
        }
    rejected: JSON = {
        "orderId": record.order_id,
        "status": REJECTED,
        "suggestedBooks": [],
        "reason": record.reason,
        "vectorClock": _clock(record.vector_clock),
    }
    if record.execution is not None:  # rejected at execution
        rejected["execution"] = execution_json(record.execution)
    return rejected
