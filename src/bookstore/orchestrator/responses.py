"""Every JSON body the orchestrator answers with, built in this one module.

Routes hand over typed values (order records, the catalogue's books, the cluster
probe's dataclasses) and get the JSON back; the keys and their order are the HTTP API
(README's "HTTP API"; the pages and the course page read them). Error bodies are in
`errors`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bookstore.catalogue import Book
from bookstore.orchestrator.admission import Admission
from bookstore.orchestrator.commitment import CoordinatedStep
from bookstore.orchestrator.execution import ExecutionInfo
from bookstore.orchestrator.probe import (
    ClusterState,
    ElectionStep,
    ExecutorState,
    InDoubt,
    PaymentState,
    QueueState,
    ReplicaState,
)
from bookstore.orchestrator.stock import Replication
from bookstore.orchestrator.store import APPROVED, REJECTED, BookRef, Event, OrderRecord
from bookstore.timestamps import utc_iso

JSON = dict[str, Any]


def _clock(clock: tuple[int, ...] | None) -> list[int] | None:
    return None if clock is None else list(clock)


# ---- books and orders -------------------------------------------------------------------


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


def replication_json(order_id: str, replication: Replication) -> JSON:
    """The GET /orders/{id}/replication body: each replica's steps, in log order."""
    return {
        "orderId": order_id,
        "answered": list(replication.answered),
        "steps": [
            {
                "replicaId": s.replica_id,
                "kind": s.kind,
                "index": s.index,
                "view": s.view,
                "op": s.op,
                "peer": s.peer or None,
            }
            for s in replication.steps
        ],
    }


def commitment_json(order_id: str, steps: tuple[CoordinatedStep, ...]) -> JSON:
    """The GET /orders/{id}/commitment body: the messages in time order."""
    return {
        "orderId": order_id,
        "steps": [
            {
                "at": c.step.at,
                "coordinator": c.replica_id,
                "kind": c.step.kind,
                "from": c.step.sender,
                "to": c.step.receiver,
                "detail": c.step.detail,
                "epoch": c.step.epoch,
            }
            for c in steps
        ],
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


def replica_json(replica: ReplicaState) -> JSON:
    return {
        "replicaId": replica.replica_id,
        "address": replica.address,
        "pid": replica.pid,
        "alive": replica.alive,
        "role": replica.role,
        "view": replica.view,
        "primaryId": replica.primary_id,
        "commitIndex": replica.commit_index,
        "appliedIndex": replica.applied_index,
        "lastIndex": replica.last_index,
        "digest": replica.digest,
        "caughtUp": replica.caught_up,
        "maxEpoch": replica.max_epoch,
    }


def database_json(replicas: tuple[ReplicaState, ...]) -> JSON:
    """The replicas, the primary of the highest view, and whether every replica that
    answered holds the same stock (same applied position and digest)."""
    alive = [r for r in replicas if r.alive]
    primaries = sorted(
        (r for r in alive if r.role == "primary"), key=lambda r: r.view or 0, reverse=True
    )
    return {
        "replicas": [replica_json(r) for r in replicas],
        "primary": None
        if not primaries
        else {"replicaId": primaries[0].replica_id, "view": primaries[0].view},
        "converged": bool(alive) and len({(r.applied_index, r.digest) for r in alive}) == 1,
    }


def payment_service_json(payment: PaymentState | None) -> JSON | None:
    if payment is None:
        return None
    return {
        "address": payment.address,
        "pid": payment.pid,
        "healthy": payment.healthy,
        "capturedCents": payment.captured_cents,
        "currency": payment.currency,
        "prepared": payment.prepared,
        "committed": payment.committed,
        "aborted": payment.aborted,
        "epoch": payment.epoch,
    }


def in_doubt_json(txn: InDoubt) -> JSON:
    return {
        "txnId": txn.txn_id,
        "where": txn.where,
        "state": txn.state,
        "epoch": txn.epoch,
        "reason": txn.reason,
        "since": txn.since,
    }


def admission_json(admission: Admission, now: float) -> JSON:
    """GET /api/cluster's "admission": checkouts in flight and waiting for a slot."""
    return {
        "inFlight": admission.in_flight,
        "capacity": admission.slots(now),
        "maxInFlight": admission.capacity,
        "waiting": admission.waiting,
        "overloaded": admission.standing(now),
        "maxWaitMs": round(admission.max_wait_s * 1000),
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
        "database": database_json(state.replicas),
        "payment": payment_service_json(state.payment),
        "inDoubt": [in_doubt_json(t) for t in state.in_doubt],
    }
