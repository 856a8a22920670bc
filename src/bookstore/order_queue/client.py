"""The queue's batch calls, client side: a process's concurrent calls share one RPC.

`Enqueues` (the orchestrator) and `LeaderCalls` (the leader executor) each send
their callers' requests through a `batching.Coalescer` as EnqueueBatch or
LeaderBatch calls. Each caller gets exactly its own operation's answer: the
reply, or a `grpc.aio.AioRpcError` with its status code and details (the
operation's `OpError`, or the whole call's failure: unreachable, deadline
exceeded), so a caller handles errors as it would for a call of its own.

The stub is asked for at every send (`stub()`), so a caller may connect later than
it builds these, and tests may swap it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar, cast

import grpc

from bookstore import grpcutil
from bookstore.batching import Coalescer
from bookstore.pb import queue_pb2, queue_pb2_grpc
from bookstore.telemetry import tracing

SERVICE = "order-queue"
Stub = Callable[[], "queue_pb2_grpc.OrderQueueAsyncStub"]
R = TypeVar("R")
A = TypeVar("A")


def rpc_error(error: queue_pb2.OpError) -> grpc.aio.AioRpcError:
    """An operation's refusal as a gRPC error of its status code and details."""
    return grpcutil.call_error(error.code, error.details)


class _BatchCalls(Generic[R, A]):
    """Requests of one kind sent together through a Coalescer: `_send` makes the
    batch call, and each request's answer is its outcome's `_answer` or its error."""

    method = ""

    def __init__(self, stub: Stub, timeout_s: float) -> None:
        self._stub = stub
        self.timeout_s = timeout_s  # the deadline of each batch call
        self.coalescer: Coalescer[R, A] = Coalescer(
            self._send, f"{SERVICE} {self.method}", service=SERVICE
        )

    def _batch(self, requests: Sequence[R]) -> Any:
        raise NotImplementedError

    def _answer(self, outcome: Any) -> A:
        return cast(A, outcome)

    async def _send(self, requests: Sequence[R]) -> list[A | BaseException]:
        reply = await getattr(self._stub(), self.method)(
            self._batch(requests), timeout=self.timeout_s, metadata=tracing.call_metadata()
        )
        outcomes = reply.outcomes
        return [rpc_error(o.error) if o.HasField("error") else self._answer(o) for o in outcomes]

    async def close(self) -> None:
        await self.coalescer.close()


class Enqueues(_BatchCalls[queue_pb2.EnqueueRequest, queue_pb2.EnqueueReply]):
    """Enqueues, batched: `enqueue(request)` answers with that enqueue's outcome."""

    method = "EnqueueBatch"

    async def enqueue(self, request: queue_pb2.EnqueueRequest) -> queue_pb2.EnqueueReply:
        return await self.coalescer.call(request)

    def _batch(self, requests: Sequence[queue_pb2.EnqueueRequest]) -> Any:
        return queue_pb2.EnqueueBatchRequest(enqueues=requests)

    def _answer(self, outcome: queue_pb2.EnqueueOutcome) -> queue_pb2.EnqueueReply:
        return outcome.reply


class LeaderCalls(_BatchCalls[queue_pb2.LeaderOp, queue_pb2.LeaderOutcome]):
    """Decisions and completions, batched together: each answers with its own outcome."""

    method = "LeaderBatch"

    async def log_decision(self, request: queue_pb2.LogDecisionRequest) -> queue_pb2.DecisionRecord:
        outcome = await self.coalescer.call(queue_pb2.LeaderOp(log_decision=request))
        return outcome.decision

    async def complete(self, request: queue_pb2.LeaseRequest) -> queue_pb2.CompleteReply:
        outcome = await self.coalescer.call(queue_pb2.LeaderOp(complete=request))
        return outcome.complete

    def _batch(self, ops: Sequence[queue_pb2.LeaderOp]) -> Any:
        return queue_pb2.LeaderBatchRequest(ops=ops)
