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

import grpc

from bookstore import grpcutil
from bookstore.batching import Coalescer
from bookstore.pb import queue_pb2, queue_pb2_grpc
from bookstore.telemetry import tracing

SERVICE = "order-queue"
Stub = Callable[[], "queue_pb2_grpc.OrderQueueAsyncStub"]


def rpc_error(error: queue_pb2.OpError) -> grpc.aio.AioRpcError:
    """An operation's refusal as a gRPC error of its status code and details."""
    return grpcutil.call_error(error.code, error.details)


class Enqueues:
    """Enqueues, batched: `enqueue(request)` answers with that enqueue's outcome."""

    def __init__(self, stub: Stub, timeout_s: float) -> None:
        self._stub = stub
        self.timeout_s = timeout_s  # the deadline of each batch call
        self.coalescer: Coalescer[queue_pb2.EnqueueRequest, queue_pb2.EnqueueReply] = Coalescer(
            self._send, "order-queue EnqueueBatch", service=SERVICE
        )

    async def enqueue(self, request: queue_pb2.EnqueueRequest) -> queue_pb2.EnqueueReply:
        return await self.coalescer.call(request)

    async def _send(
        self, requests: Sequence[queue_pb2.EnqueueRequest]
    ) -> list[queue_pb2.EnqueueReply | BaseException]:
        reply = await self._stub().EnqueueBatch(
            queue_pb2.EnqueueBatchRequest(enqueues=requests),
            timeout=self.timeout_s,
            metadata=tracing.call_metadata(),
        )
        return [rpc_error(o.error) if o.HasField("error") else o.reply for o in reply.outcomes]

    async def close(self) -> None:
        await self.coalescer.close()


class LeaderCalls:
    """Decisions and completions, batched together: each answers with its own outcome."""

    def __init__(self, stub: Stub, timeout_s: float) -> None:
        self._stub = stub
        self.timeout_s = timeout_s  # the deadline of each batch call
        self.coalescer: Coalescer[queue_pb2.LeaderOp, queue_pb2.LeaderOutcome] = Coalescer(
            self._send, "order-queue LeaderBatch", service=SERVICE
        )

    async def log_decision(self, request: queue_pb2.LogDecisionRequest) -> queue_pb2.DecisionRecord:
        outcome = await self.coalescer.call(queue_pb2.LeaderOp(log_decision=request))
        return outcome.decision

    async def complete(self, request: queue_pb2.LeaseRequest) -> queue_pb2.CompleteReply:
        outcome = await self.coalescer.call(queue_pb2.LeaderOp(complete=request))
        return outcome.complete

    async def _send(
        self, ops: Sequence[queue_pb2.LeaderOp]
    ) -> list[queue_pb2.LeaderOutcome | BaseException]:
        reply = await self._stub().LeaderBatch(
            queue_pb2.LeaderBatchRequest(ops=ops),
            timeout=self.timeout_s,
            metadata=tracing.call_metadata(),
        )
        return [rpc_error(o.error) if o.HasField("error") else o for o in reply.outcomes]

    async def close(self) -> None:
        await self.coalescer.close()
