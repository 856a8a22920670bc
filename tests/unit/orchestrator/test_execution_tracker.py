from __future__ import annotations

import asyncio

from bookstore.grpcutil import ServiceUnavailable
from bookstore.orchestrator.execution import ExecutionInfo, ExecutionTracker
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
