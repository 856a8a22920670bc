"""One operation of the queue's batch calls, as a test makes it: the operation's
reply, or its refusal raised as the gRPC error of its status and details (what
the product's clients, `order_queue.client`, hand their callers)."""

from __future__ import annotations

from typing import Any

from bookstore.order_queue.client import rpc_error
from bookstore.pb import queue_pb2


async def enqueue(
    stub: Any, request: queue_pb2.EnqueueRequest, timeout: float | None = None
) -> queue_pb2.EnqueueReply:
    batch = queue_pb2.EnqueueBatchRequest(enqueues=[request])
    (outcome,) = (await stub.EnqueueBatch(batch, timeout=timeout)).outcomes
    if outcome.HasField("error"):
        raise rpc_error(outcome.error)
    return outcome.reply


async def _leader_op(stub: Any, op: queue_pb2.LeaderOp, timeout: float | None) -> Any:
    batch = queue_pb2.LeaderBatchRequest(ops=[op])
    (outcome,) = (await stub.LeaderBatch(batch, timeout=timeout)).outcomes
    if outcome.HasField("error"):
        raise rpc_error(outcome.error)
    return outcome


async def log_decision(
    stub: Any, request: queue_pb2.LogDecisionRequest, timeout: float | None = None
) -> queue_pb2.DecisionRecord:
    outcome = await _leader_op(stub, queue_pb2.LeaderOp(log_decision=request), timeout)
    return outcome.decision


async def complete(
    stub: Any, request: queue_pb2.LeaseRequest, timeout: float | None = None
) -> queue_pb2.CompleteReply:
    outcome = await _leader_op(stub, queue_pb2.LeaderOp(complete=request), timeout)
    return outcome.complete
