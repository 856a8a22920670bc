"""Every JSON body the orchestrator answers with, built in this one module.

Routes hand over typed values (order records, the catalogue's books, the cluster
probe's dataclasses) and get the JSON back; the keys and their order are the HTTP API
(README's "HTTP API"; the pages and the course page read them). Error bodies are in
`errors`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bookstore.catalogue import Book
from bookstore.orchestrator.execution import ExecutionInfo
from bookstore.orchestrator.probe import ClusterState, ElectionStep, ExecutorState, QueueState
from bookstore.orchestrator.store import APPROVED, REJECTED, BookRef, Event, OrderRecord
from bookstore.timestamps import utc_iso

JSON = dict[str, Any]


def _clock(clock: tuple[int, ...] | None) -> list[int] | None:
    return None if clock is None else list(clock)


# ---- books and orders -------------------------------------------------------------------


def book_json(book: Book) -> JSON:
    """One book of GET /api/books."""
    return {
        "bookId": book.book_id,
        "title": book.title,
        "author": book.author,
        "genre": book.genre,
        "price": book.price,
        "stock": book.stock,
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
        }
    return {
        "orderId": record.order_id,
        "status": REJECTED,
        "suggestedBooks": [],
        "reason": record.reason,
        "vectorClock": _clock(record.vector_clock),
    }


# ---- the cluster view -------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceRow:
    """One service of GET /api/cluster's "services"."""

    name: str
    address: str | None
    pid: int | None
    healthy: bool
    replica_id: int | None = None
    cached_orders: int | None = None
    metrics: str | None = None  # where its Prometheus metrics are served (None: off)

    def to_json(self) -> JSON:
        return {
            "name": self.name,
            "replicaId": self.replica_id,
            "address": self.address,
            "pid": self.pid,
            "healthy": self.healthy,
            "cachedOrders": self.cached_orders,
            "metrics": self.metrics,
        }


def queue_json(queue: QueueState) -> JSON:
    return {
        "depth": queue.depth,
        "next": [
            {"orderId": n.order_id, "books": n.books, "sequence": n.sequence} for n in queue.next
        ],
        "epoch": queue.epoch,
        "leaderId": queue.leader_id,
        "leased": queue.leased,
        "executed": queue.executed,
        "pid": queue.pid,
        "healthy": queue.healthy,
    }


def executor_json(executor: ExecutorState) -> JSON:
    return {
        "replicaId": executor.replica_id,
        "address": executor.address,
        "pid": executor.pid,
        "alive": executor.alive,
        "role": executor.role,
        "leaderId": executor.leader_id,
        "epoch": executor.epoch,
        "executed": executor.executed,
    }


def election_json(step: ElectionStep) -> JSON:
    return {
        "at": step.at,
        "replicaId": step.replica_id,
        "step": step.step,
        "detail": step.detail,
        "epoch": step.epoch,
    }


def cluster_json(services: list[ServiceRow], state: ClusterState) -> JSON:
    """The GET /api/cluster body."""
    leader = state.leader
    return {
        "services": [s.to_json() for s in services],
        "queue": queue_json(state.queue),
        "executors": [executor_json(e) for e in state.executors],
        "leader": None
        if leader is None
        else {"replicaId": leader.replica_id, "epoch": leader.epoch},
        "elections": [election_json(s) for s in state.elections],
    }
