"""An order's two-phase commit as its coordinators recorded it, for
GET /orders/{id}/commitment: every executor that answers within STATUS_TIMEOUT_S
is asked (after a failover the order may have had more than one coordinator) and
the steps are merged in time order."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol, cast

import grpc

from bookstore import grpcutil
from bookstore.commitment.trace import CommitmentStep
from bookstore.pb import common_pb2, executor_pb2, executor_pb2_grpc
from bookstore.settings import Settings

STATUS_TIMEOUT_S = 0.5


@dataclass(frozen=True)
class CoordinatedStep:
    replica_id: int  # the executor that coordinated
    step: CommitmentStep


class CommitmentSource(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def steps(self, order_id: str) -> tuple[CoordinatedStep, ...]:
        """The order's commitment steps from every executor that answers, in time order."""
        ...


class ExecutorCommitments:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._channels: dict[int, grpc.aio.Channel] = {}

    async def start(self) -> None:
        self._channels = {
            i: grpcutil.insecure_channel(a)
            for i, a in self.settings.order_executor_addresses.items()
        }

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels = {}

    async def _ask(self, channel: grpc.aio.Channel, order_id: str) -> executor_pb2.CommitmentLog:
        stub = cast(
            "executor_pb2_grpc.OrderExecutorAsyncStub", executor_pb2_grpc.OrderExecutorStub(channel)
        )
        log: executor_pb2.CommitmentLog = await stub.Commitment(
            common_pb2.OrderId(value=order_id), timeout=STATUS_TIMEOUT_S
        )
        return log

    async def steps(self, order_id: str) -> tuple[CoordinatedStep, ...]:
        found = await asyncio.gather(
            *(self._ask(c, order_id) for c in self._channels.values()), return_exceptions=True
        )
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
