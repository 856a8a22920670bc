"""What the queue and the executors say about themselves, for the cluster view.

`ClusterProbe.state()` asks the queue and every executor for their status at once
(each bounded by STATUS_TIMEOUT_S) and returns dataclasses; anything that does not
answer is reported unknown. The JSON of the cluster view is built in `responses`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import cast

import grpc

from bookstore import grpcutil
from bookstore.pb import common_pb2, executor_pb2_grpc, queue_pb2_grpc
from bookstore.settings import Settings

STATUS_TIMEOUT_S = 0.5
ELECTION_STEPS = 100  # the cluster view shows at most this many recent election steps


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
class ClusterState:
    queue: QueueState
    executors: tuple[ExecutorState, ...]
    leader: Leader | None
    elections: tuple[ElectionStep, ...]


def cluster_unknown(settings: Settings) -> ClusterState:
    """The cluster state when nothing answers."""
    executors = tuple(
        ExecutorState(rid, address)
        for rid, address in sorted(settings.order_executor_addresses.items())
    )
    return ClusterState(QueueState(), executors, None, ())


def leader_of(queue: QueueState, executors: tuple[ExecutorState, ...]) -> Leader | None:
    """A live replica claiming leadership, preferring the one holding the queue's current
    epoch (a paused or deposed one may still claim)."""
    leading = [e for e in executors if e.alive and e.role == "leader"]
    leading.sort(key=lambda e: (e.epoch == queue.epoch, e.epoch or 0), reverse=True)
    return Leader(leading[0].replica_id, leading[0].epoch) if leading else None


class ClusterProbe:
    """Asks the queue (through the tracker's stub) and each executor for its status."""

    def __init__(
        self, settings: Settings, queue: Callable[[], queue_pb2_grpc.OrderQueueAsyncStub]
    ) -> None:
        self.settings = settings
        self._queue = queue
        self._channels: dict[int, grpc.aio.Channel] = {}

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()

    async def state(self) -> ClusterState:
        addresses = self.settings.order_executor_addresses
        queue, answers = await asyncio.gather(
            self._queue_state(),
            asyncio.gather(*(self._executor_state(i, a) for i, a in addresses.items())),
        )
        executors = tuple(entry for entry, _ in answers)
        steps = sorted(
            (step for _, found in answers for step in found), key=lambda s: (s.at, s.replica_id)
        )
        return ClusterState(
            queue, executors, leader_of(queue, executors), tuple(steps[-ELECTION_STEPS:])
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
