"""The cluster view's questions to the queue, the executors, the books database's
replicas and payment.

`ClusterProbe.state()` asks them all for their status at once (each bounded by
STATUS_TIMEOUT_S), with the queue's decision log and payment's prepared list (the
in-doubt transactions); `replication(order_id)` asks every replica what it did with
the order's operations, `commitment(order_id)` every executor what it recorded of the
order's two-phase commit (after a failover it may have had more than one coordinator).
Anything that does not answer is reported unknown or left out.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import cast

import grpc

from bookstore import grpcutil
from bookstore.books_database.client import BooksDatabaseClient
from bookstore.books_database.trail import TrailEvent
from bookstore.cluster_view.state import (
    ClusterState,
    CoordinatedStep,
    ElectionStep,
    ExecutorState,
    InDoubt,
    PaymentState,
    QueuedEntry,
    QueueState,
    ReplicaState,
    Replication,
    leader_of,
    replicas_unknown,
)
from bookstore.commitment.trace import CommitmentStep
from bookstore.pb import (
    books_database_pb2,
    common_pb2,
    executor_pb2,
    executor_pb2_grpc,
    payment_pb2_grpc,
    queue_pb2,
    queue_pb2_grpc,
)
from bookstore.settings import Settings

STATUS_TIMEOUT_S = 0.5
ELECTION_STEPS = 100  # the cluster view shows at most this many recent election steps
IN_DOUBT_SHOWN = 50  # decided orders not yet finished, oldest first (payment sends <= 100)
# The order of an operation's steps at one log position.
STEP_ORDER = {"appended": 0, "stored": 1, "acked": 2, "applied": 3}


class ClusterProbe:
    """Asks the queue, each executor, each books-database replica and payment; its
    channels open on first use and close with it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._database: BooksDatabaseClient | None = None

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        if self._database is not None:
            await self._database.close()
            self._database = None

    def _channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = grpcutil.channel(address)
        return channel

    def _queue(self) -> queue_pb2_grpc.OrderQueueAsyncStub:
        channel = self._channel(self.settings.order_queue_address)
        return cast("queue_pb2_grpc.OrderQueueAsyncStub", queue_pb2_grpc.OrderQueueStub(channel))

    def _executor(self, address: str) -> executor_pb2_grpc.OrderExecutorAsyncStub:
        return cast(
            "executor_pb2_grpc.OrderExecutorAsyncStub",
            executor_pb2_grpc.OrderExecutorStub(self._channel(address)),
        )

    def _replicas(self) -> BooksDatabaseClient:
        if self._database is None:
            self._database = BooksDatabaseClient(
                self.settings.books_database_addresses, rpc_timeout_s=STATUS_TIMEOUT_S
            )
        return self._database

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
        database = self._replicas()
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
        stub = cast(
            "payment_pb2_grpc.PaymentAsyncStub",
            payment_pb2_grpc.PaymentStub(self._channel(address)),
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
        unknown = ExecutorState(replica_id, address)
        try:
            s = await self._executor(address).Status(common_pb2.Empty(), timeout=STATUS_TIMEOUT_S)
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

    async def replication(self, order_id: str) -> Replication:
        """What every replica that answers did with the order's operations, in log order."""
        database = self._replicas()
        found = await asyncio.gather(
            *(database.order_events(i, order_id) for i in database.ids), return_exceptions=True
        )
        answered = tuple(
            i for i, r in zip(database.ids, found, strict=True) if not isinstance(r, BaseException)
        )
        steps = [
            TrailEvent(e.replica_id, e.kind, e.index, e.view, e.op, e.peer)
            for events in found
            if not isinstance(events, BaseException)
            for e in events
        ]
        steps.sort(key=lambda s: (s.index, STEP_ORDER.get(s.kind, 9), s.replica_id, s.peer))
        return Replication(answered, tuple(steps))

    async def commitment(self, order_id: str) -> tuple[CoordinatedStep, ...]:
        """The order's two-phase-commit steps from every executor that answers, in time
        order."""
        asked = (
            self._executor(a).Commitment(
                common_pb2.OrderId(value=order_id), timeout=STATUS_TIMEOUT_S
            )
            for a in self.settings.order_executor_addresses.values()
        )
        found = await asyncio.gather(*asked, return_exceptions=True)
        steps = [
            CoordinatedStep(
                log.replica_id,
                CommitmentStep(s.at, s.kind, s.sender, s.receiver, s.detail, s.epoch),
            )
            for log in found
            if isinstance(log, executor_pb2.CommitmentLog)
            for s in log.steps
        ]
        steps.sort(key=lambda c: (c.step.at, c.step.epoch))  # stable: each log's own order
        return tuple(steps)


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
