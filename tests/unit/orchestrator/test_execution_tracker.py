from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from bookstore.grpcutil import ServiceUnavailable
from bookstore.orchestrator.execution import ExecutionInfo, ExecutionTracker
from bookstore.pb import queue_pb2
from bookstore.settings import Settings


async def test_a_failed_recheck_is_retried_while_someone_waits() -> None:
    tracker = ExecutionTracker(Settings(order_queue_address="127.0.0.1:9"))
    asked = 0

    async def busy_then_answers(order_id: str) -> ExecutionInfo | None:
        nonlocal asked
        asked += 1
        if asked < 3:
            raise ServiceUnavailable("order-queue", "deadline_exceeded")
        return ExecutionInfo("executed", executor=2, epoch=1, sequence=7, executed_at="t")

    tracker.status = busy_then_answers  # type: ignore[method-assign]
    try:
        info = await tracker.wait_executed("o1", 5.0)
    finally:
        await tracker.close()
    assert info is not None and (info.executor, info.sequence) == (2, 7)
    assert asked == 3


async def test_no_recheck_outlives_its_waiter() -> None:
    tracker = ExecutionTracker(Settings(order_queue_address="127.0.0.1:9"))
    asked = 0

    async def never_answers(order_id: str) -> ExecutionInfo | None:
        nonlocal asked
        asked += 1
        raise ServiceUnavailable("order-queue", "unavailable")

    tracker.status = never_answers  # type: ignore[method-assign]
    try:
        assert await tracker.wait_executed("o1", 0.3) is None
        settled = asked
        await asyncio.sleep(0.5)
    finally:
        await tracker.close()
    assert asked <= settled + 1


class RestartingQueue:
    """An EnqueueBatch call that fails UNAVAILABLE with each of `details` first, then
    answers; a detail starting "DISK_FULL" refuses each enqueue instead, as the queue
    does (the call itself succeeds)."""

    def __init__(self, *details: str) -> None:
        self.failures = list(details)
        self.calls = 0

    async def EnqueueBatch(
        self, request: Any, timeout: float, **_: Any
    ) -> queue_pb2.EnqueueBatchReply:
        self.calls += 1
        reply = queue_pb2.EnqueueBatchReply()
        details = self.failures.pop(0) if self.failures else None
        if details is not None and not details.startswith("DISK_FULL"):
            meta = grpc.aio.Metadata()
            raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, meta, meta, details=details)
        for _ in request.enqueues:
            if details is None:
                reply.outcomes.add(reply=queue_pb2.EnqueueReply(sequence=1))
            else:
                code = grpc.StatusCode.UNAVAILABLE.value[0]
                reply.outcomes.add(error=queue_pb2.OpError(code=code, details=details))
        return reply


async def test_an_enqueue_is_retried_while_the_queue_restarts() -> None:
    tracker = ExecutionTracker(Settings(order_queue_address="127.0.0.1:9", enqueue_retry_s=5.0))
    queue = RestartingQueue("connection refused", "connection refused", "")
    tracker._queue = queue  # type: ignore[assignment]
    try:
        await tracker.enqueue("o1", [], "Ann")
    finally:
        await tracker.close()
    assert queue.calls == 4


async def test_an_enqueue_gives_up_after_its_budget_and_at_once_on_a_full_disk() -> None:
    tracker = ExecutionTracker(Settings(order_queue_address="127.0.0.1:9", enqueue_retry_s=0.2))
    refusing = RestartingQueue(*(["connection refused"] * 1000))
    full = RestartingQueue("DISK_FULL: no space left on device")
    try:
        tracker._queue = refusing  # type: ignore[assignment]
        with pytest.raises(ServiceUnavailable):
            await tracker.enqueue("o1", [], "Ann")
        assert 1 < refusing.calls < 1000
        tracker._queue = full  # type: ignore[assignment]
        with pytest.raises(ServiceUnavailable, match="DISK_FULL"):
            await tracker.enqueue("o2", [], "Ann")
        assert full.calls == 1
    finally:
        await tracker.close()
