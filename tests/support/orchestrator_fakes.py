"""Fake pipeline, tracker, stock and cluster sources for the HTTP layer's tests (no gRPC):
the orchestrator's and the cluster view's."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from commitment_steps import COMMITTED

from bookstore.books_database.trail import TrailEvent
from bookstore.catalogue import load_catalogue
from bookstore.cluster_view.state import (
    ClusterState,
    CoordinatedStep,
    ExecutorState,
    Leader,
    QueueState,
    Replication,
)
from bookstore.commitment.trace import CommitmentStep
from bookstore.grpcutil import ServiceUnavailable
from bookstore.orchestrator.execution import ExecutionInfo, QueuedItem
from bookstore.orchestrator.flow import EventRecord, Outcome, Suggestion
from bookstore.orchestrator.models import CheckoutRequest
from bookstore.orchestrator.pipeline import ServiceStats


@dataclass
class FakePipeline:
    """Approves every order unless told otherwise; remembers what it was asked."""

    reject_reason: str = ""
    error: Exception | None = None
    delay_s: float = 0.0
    runs: list[tuple[str, CheckoutRequest]] = field(default_factory=list)
    stats_error: Exception | None = None
    gate: asyncio.Event | None = None  # when given, every run waits for it to be set
    arrivals: asyncio.Queue[str] = field(default_factory=asyncio.Queue)  # ids of runs begun

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def run(self, order_id: str, request: CheckoutRequest) -> Outcome:
        self.runs.append((order_id, request))
        self.arrivals.put_nowait(order_id)
        if self.gate is not None:
            await self.gate.wait()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        event = EventRecord(
            event="a",
            name="items",
            service="transaction-verification",
            clock=(1, 0, 0),
            ok=not self.reject_reason,
            reason=self.reject_reason,
            answered_by="rules",
            at=1_700_000_000.0,
            duration_ms=0.5,
        )
        if self.reject_reason:
            return Outcome(
                order_id,
                approved=False,
                reason=self.reject_reason,
                events=[event],
                cancel_clocks={"suggestions": (1, 0, 0)},
                final_clock=(1, 0, 0),
            )
        return Outcome(
            order_id,
            approved=True,
            reason="",
            suggestions=[Suggestion("b002", "Distributed Systems", "Maarten van Steen")],
            events=[event],
            final_clock=(3, 2, 1),
            payment_token="tok_test",
        )

    async def stats(self) -> list[ServiceStats]:
        if self.stats_error is not None:
            raise self.stats_error
        return [
            ServiceStats("transaction-verification", "127.0.0.1:1", True, 11, 0),
            ServiceStats("fraud-detection", "127.0.0.1:2", True, 12, 0),
            ServiceStats("suggestions", "127.0.0.1:3", False, None, None),
        ]


@dataclass
class FakeTracker:
    """Executes on enqueue unless `execute` is False."""

    execute: bool = True
    enqueue_error: Exception | None = None
    enqueue_calls: int = 0
    lose_enqueue_answer: bool = False  # on disk, but the caller hears a failure
    enqueued: list[tuple[str, list[QueuedItem], str]] = field(default_factory=list)
    executed: dict[str, ExecutionInfo] = field(default_factory=dict)
    payments: dict[str, tuple[str, int]] = field(default_factory=dict)  # token, amount
    reject_at_execution: str = ""  # the reason every order is rejected at execution

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def enqueue(
        self,
        order_id: str,
        items: list[QueuedItem],
        customer_name: str,
        *,
        payment_token: str = "",
        amount_cents: int = 0,
    ) -> None:
        self.enqueue_calls += 1
        if self.enqueue_error is not None:
            raise self.enqueue_error
        if all(o != order_id for o, _, _ in self.enqueued):  # idempotent by order id
            self.enqueued.append((order_id, items, customer_name))
            self.payments[order_id] = (payment_token, amount_cents)
            if self.reject_at_execution:
                self.executed[order_id] = ExecutionInfo(
                    "rejected", 4, 2, len(self.enqueued), "t", reason=self.reject_at_execution
                )
            elif self.execute:
                self.executed[order_id] = ExecutionInfo(
                    "executed",
                    executor=4,
                    epoch=2,
                    sequence=len(self.enqueued),
                    executed_at="t",
                    amount_cents=amount_cents,
                    currency="EUR",
                )
        if self.lose_enqueue_answer:
            raise ServiceUnavailable("order-queue", "deadline_exceeded")

    async def wait_executed(self, order_id: str, timeout: float) -> ExecutionInfo | None:
        return self.executed.get(order_id)

    async def status(self, order_id: str) -> ExecutionInfo | None:
        if order_id in self.executed:
            return self.executed[order_id]
        return ExecutionInfo("queued") if any(o == order_id for o, _, _ in self.enqueued) else None


UNAVAILABLE = ServiceUnavailable("fraud-detection", "unavailable")


@dataclass
class FakeStock:
    """The books database: available copies (`down`: unknown)."""

    copies: dict[str, int] = field(default_factory=dict)
    default: int = 7
    down: bool = False

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def available(self) -> dict[str, int] | None:
        if self.down:
            return None
        return {b.book_id: self.copies.get(b.book_id, self.default) for b in load_catalogue().all()}


@dataclass
class FakeCluster:
    """The cluster's state (`hangs`: it never answers); the replication steps of the
    order "o-replicated" (`down`: no replica answers); executor 4 coordinated
    "o-committed" at epoch 2."""

    hangs: bool = False
    down: bool = False

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def state(self) -> ClusterState:
        if self.hangs:
            await asyncio.sleep(60)
        queue = QueueState(
            depth=0, epoch=2, leader_id=1, leased=0, executed=0, pid=20, healthy=True
        )
        executor = ExecutorState(
            1, "127.0.0.1:5", pid=21, alive=True, role="follower", leader_id=1, epoch=2, executed=0
        )
        return ClusterState(queue, (executor,), Leader(1, 2), ())

    async def replication(self, order_id: str) -> Replication:
        if self.down:
            return Replication((), ())
        steps = [
            TrailEvent(2, "appended", 7, 3, "reserve", 0),
            TrailEvent(1, "stored", 7, 3, "reserve", 0),
            TrailEvent(2, "acked", 7, 3, "reserve", 1),
            TrailEvent(2, "applied", 7, 3, "reserve", 0),
        ]
        return Replication((1, 2, 3), tuple(steps if order_id == "o-replicated" else ()))

    async def commitment(self, order_id: str) -> tuple[CoordinatedStep, ...]:
        if order_id != "o-committed":
            return ()
        return tuple(
            CoordinatedStep(4, CommitmentStep(f"2026-01-01T00:00:00.{n:03d}Z", k, f, t, d, 2))
            for n, (k, f, t, d) in enumerate(COMMITTED)
        )
