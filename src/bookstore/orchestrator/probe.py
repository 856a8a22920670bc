"""What the queue, the executors, the books database's replicas and payment say about
themselves, for the cluster view.

`ClusterProbe.state()` asks them all for their status at once (each bounded by
STATUS_TIMEOUT_S), with the queue's decision log and payment's prepared list (the
in-doubt transactions), and returns dataclasses; anything that does not answer is
reported unknown. The JSON of the cluster view is built in `responses`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import cast

import grpc

from bookstore import grpcutil
from bookstore.books_database.client import BooksDatabaseClient
from bookstore.pb import (
    books_database_pb2,
    common_pb2,
    executor_pb2_grpc,
    payment_pb2_grpc,
    queue_pb2,
    queue_pb2_grpc,
)
from bookstore.settings import Settings

STATUS_TIMEOUT_S = 0.5
ELECTION_STEPS = 100  # the cluster view shows at most this many recent election steps
IN_DOUBT_SHOWN = 50  # decided orders not yet finished, oldest first (payment sends <= 100)


@dataclass(frozen=True)
class QueuedEntry:
    order_id: str
    books: int
    sequence: int


@dataclass(frozen=True)
class QueueState:
    """The queue's status; the defaults say it did not answer."""

    depth: int | None = None
    next: tuple[QueuedEntry, ...] = ()
    epoch: int | None = None
    leader_id: int | None = None
    leased: int | None = None
    executed: int | None = None
    pid: int | None = None
    healthy: bool = False


@dataclass(frozen=True)
class ExecutorState:
    """One executor's status; the defaults say it did not answer."""

    replica_id: int
    address: str
    pid: int | None = None
    alive: bool = False
    role: str | None = None
    leader_id: int | None = None
    epoch: int | None = None
    executed: int | None = None


@dataclass(frozen=True)
class ElectionStep:
    at: str  # RFC 3339
    replica_id: int
    step: str
    detail: str
    epoch: int


@dataclass(frozen=True)
class Leader:
    replica_id: int
    epoch: int | None


@dataclass(frozen=True)
class ReplicaState:
    """One books-database replica's status; the defaults say it did not answer."""

    replica_id: int
    address: str
    pid: int | None = None
    alive: bool = False
    role: str | None = None
    view: int | None = None
    primary_id: int | None = None  # the primary it follows
    commit_index: int | None = None
    applied_index: int | None = None
    last_index: int | None = None
    digest: str | None = None  # of the stock table: equal digests, same stock
    caught_up: bool | None = None
    max_epoch: int | None = None


@dataclass(frozen=True)
class PaymentState:
    """The payment service's status; the defaults say it did not answer."""

    address: str
    pid: int | None = None
    healthy: bool = False
    captured_cents: int | None = None
    currency: str | None = None
    prepared: int | None = None
    committed: int | None = None
    aborted: int | None = None
    epoch: int | None = None


@dataclass(frozen=True)
class InDoubt:
    """A transaction not finished everywhere: decided in the queue's log with its order
    not yet finished (where="decision-log"), or prepared at payment (where="payment")."""

    txn_id: str
    where: str
    state: str  # decision-log: "commit" | "abort"; payment: "prepared"
    epoch: int
    reason: str
    since: str  # RFC 3339: decided or last updated


@dataclass(frozen=True)
class ClusterState:
    queue: QueueState
    executors: tuple[ExecutorState, ...]
    leader: Leader | None
    elections: tuple[ElectionStep, ...]
    replicas: tuple[ReplicaState, ...] = ()
    payment: PaymentState | None = None
    in_doubt: tuple[InDoubt, ...] = ()


def cluster_unknown(settings: Settings) -> ClusterState:
    """The cluster state when nothing answers."""
    executors = tuple(
        ExecutorState(rid, address)
        for rid, address in sorted(settings.order_executor_addresses.items())
    )
    return ClusterState(
        QueueState(),
        executors,
        None,
        (),
        replicas_unknown(settings),
        PaymentState(settings.payment_address),
    )


def replicas_unknown(settings: Settings) -> tuple[ReplicaState, ...]:
    addresses = settings.books_database_addresses
    return tuple(ReplicaState(rid, address) for rid, address in sorted(addresses.items()))


def leader_of(queue: QueueState, executors: tuple[ExecutorState, ...]) -> Leader | None:
    """A live replica claiming leadership, preferring the one holding the queue's current
    epoch (a paused or deposed one may still claim)."""
    leading = [e for e in executors if e.alive and e.role == "leader"]
    leading.sort(key=lambda e: (e.epoch == queue.epoch, e.epoch or 0), reverse=True)
    return Leader(leading[0].replica_id, leading[0].epoch) if leading else None


class ClusterProbe:
    """Asks the queue (through the tracker's stub), each executor, each books-database
    replica and payment for their status."""

    def __init__(
        self, settings: Settings, queue: Callable[[], queue_pb2_grpc.OrderQueueAsyncStub]
    ) -> None:
        self.settings = settings
        self._queue = queue
        self._channels: dict[int, grpc.aio.Channel] = {}
        self._database: BooksDatabaseClient | None = None
        self._payment_channel: grpc.aio.Channel | None = None

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        if self._database is not None:
            await self._database.close()
            self._database = None
        if self._payment_channel is not None:
            await self._payment_channel.close()
            self._payment_channel = None

    async def state(self) -> ClusterState:
        addresses = self.settings.order_executor_addresses
        queue, answers, replicas, (payment, prepared), decided = await asyncio.gather(
            self._queue_state(),
            asyncio.gather(*(self._executor_state(i, a) for i, a in addresses.items())),
            self._replica_states(),
            self._payment_state(),
            self._decided_not_finished(),
        )
        executors = tuple(entry for entry, _ in answers)
        steps = sorted(
            (step for _, found in answers for step in found), key=lambda s: (s.at, s.replica_id)
        )
        return ClusterState(
            queue,
            executors,
            leader_of(queue, executors),
            tuple(steps[-ELECTION_STEPS:]),
            replicas,
            payment,
            (*decided, *prepared),
        )

    async def _replica_states(self) -> tuple[ReplicaState, ...]:
        if self._database is None:
            self._database = BooksDatabaseClient(
                self.settings.books_database_addresses, rpc_timeout_s=STATUS_TIMEOUT_S
            )
        database = self._database
        unknown = replicas_unknown(self.settings)
        answers = await asyncio.gather(
            *(database.status(r.replica_id) for r in unknown), return_exceptions=True
        )
        return tuple(
            _replica_state(entry, answer) if not isinstance(answer, BaseException) else entry
            for entry, answer in zip(unknown, answers, strict=True)
        )

    async def _payment_state(self) -> tuple[PaymentState, tuple[InDoubt, ...]]:
        address = self.settings.payment_address
        if self._payment_channel is None:
            self._payment_channel = grpcutil.channel(address)
        stub = cast(
            "payment_pb2_grpc.PaymentAsyncStub", payment_pb2_grpc.PaymentStub(self._payment_channel)
        )
        try:
            s = await stub.Status(common_pb2.Empty(), timeout=STATUS_TIMEOUT_S)
        except grpc.aio.AioRpcError:
            return PaymentState(address), ()
        state = PaymentState(
            address,
            pid=s.pid,
            healthy=True,
            captured_cents=s.captured_cents,
            currency=s.currency,
            prepared=s.prepared,
            committed=s.committed,
            aborted=s.aborted,
            epoch=s.epoch,
        )
        prepared = tuple(
            InDoubt(t.txn_id.value, "payment", t.state, t.epoch, t.reason, t.updated_at)
            for t in s.in_doubt
        )
        return state, prepared

    async def _decided_not_finished(self) -> tuple[InDoubt, ...]:
        try:
            found = await self._queue().ListDecisions(
                queue_pb2.ListDecisionsRequest(limit=IN_DOUBT_SHOWN), timeout=STATUS_TIMEOUT_S
            )
        except (grpc.aio.AioRpcError, grpcutil.ServiceUnavailable):
            return ()
        return tuple(
            InDoubt(d.order_id.value, "decision-log", d.decision, d.epoch, d.reason, d.decided_at)
            for d in found.pending
        )

    async def _queue_state(self) -> QueueState:
        try:
            s = await self._queue().Status(common_pb2.Empty(), timeout=STATUS_TIMEOUT_S)
        except (grpc.aio.AioRpcError, grpcutil.ServiceUnavailable):
            return QueueState()
        return QueueState(
            depth=s.depth,
            next=tuple(QueuedEntry(o.order_id.value, o.books, o.sequence) for o in s.next),
            epoch=s.epoch,
            leader_id=s.leader_id or None,
            leased=s.leased,
            executed=s.executed,
            pid=s.pid,
            healthy=True,
        )

    async def _executor_state(
        self, replica_id: int, address: str
    ) -> tuple[ExecutorState, list[ElectionStep]]:
        channel = self._channels.get(replica_id)
        if channel is None:
            channel = self._channels[replica_id] = grpcutil.channel(address)
        stub = cast(
            "executor_pb2_grpc.OrderExecutorAsyncStub", executor_pb2_grpc.OrderExecutorStub(channel)
        )
        unknown = ExecutorState(replica_id, address)
        try:
            s = await stub.Status(common_pb2.Empty(), timeout=STATUS_TIMEOUT_S)
        except grpc.aio.AioRpcError:
            return unknown, []
        entry = replace(
            unknown,
            pid=s.pid,
            alive=True,
            role=s.role,
            leader_id=s.leader_id or None,
            epoch=s.epoch,
            executed=s.executed,
        )
        steps = [
            ElectionStep(st.at, st.replica_id, st.step, st.detail, st.epoch)
            for st in s.recent_steps
        ]
        return entry, steps


def _replica_state(unknown: ReplicaState, s: books_database_pb2.ReplicaStatus) -> ReplicaState:
    """`unknown` filled in from a ReplicaStatus."""
    return replace(
        unknown,
        pid=s.pid,
        alive=True,
        role=s.role,
        view=s.view,
        primary_id=s.primary or None,
        commit_index=s.commit_index,
        applied_index=s.applied_index,
        last_index=s.last_index,
        digest=s.digest,
        caught_up=s.caught_up,
        max_epoch=s.max_epoch,
    )
