"""A full disk under the real queue process: refusals, then recovery, nothing lost.

The queue's data directory is a small tmpfs the test mounts (root needed:
CI runs as root; anywhere else the test fails and says so, never skips).
Filled to the last byte, an enqueue is refused with UNAVAILABLE "DISK_FULL"
while the process keeps running and answering reads; once space is freed,
enqueues work again and every acknowledged order is executed exactly once.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc
import pytest
from queue_calls import enqueue
from queue_harness import Cluster
from tmpfs_disk import fill, small_tmpfs

from bookstore.pb import common_pb2, queue_pb2

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def order(books: int = 1) -> queue_pb2.EnqueueRequest:
    items = [common_pb2.OrderItem(book_id=f"b{i}", title="A" * 200, quantity=1) for i in range(50)]
    return queue_pb2.EnqueueRequest(
        order=queue_pb2.QueuedOrder(
            order_id=common_pb2.OrderId(value=str(uuid.uuid4())),
            items=items[:books],
            customer_name="Disk Tester",
        )
    )


async def test_a_full_disk_refuses_enqueues_then_recovers_with_nothing_lost(
    tmp_path: Path,
) -> None:
    with small_tmpfs(tmp_path / "data"):
        cluster = Cluster(tmp_path)
        try:
            await cluster.start_queue()
            for _ in range(5):
                await cluster.enqueue(2)
            assert len(cluster.history.acknowledged()) == 5

            filler = fill(cluster.data_dir)
            refused = []
            for _ in range(3):
                request = order(50)
                with pytest.raises(grpc.aio.AioRpcError) as exc:
                    await enqueue(cluster.queue, request, timeout=5.0)
                assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
                assert (exc.value.details() or "").startswith("DISK_FULL: ")
                refused.append(request.order.order_id.value)
            # No crash loop: the same process still serves reads.
            assert cluster.procs["queue"].poll() is None
            assert (await cluster.status()).depth == 5
            for oid in cluster.history.acknowledged():
                reply = await cluster.queue.GetOrder(common_pb2.OrderId(value=oid), timeout=2)
                assert reply.state == "queued"

            filler.unlink()
            for _ in range(5):
                await cluster.enqueue(3)
            assert len(cluster.history.acknowledged()) == 10
            assert cluster.procs["queue"].poll() is None
            assert "queue writes succeed again" in cluster.log("queue")

            for i in cluster.ids:
                await cluster.start_executor(i)
            await cluster.wait_drained()
            executions = cluster.check_history()
            assert not set(refused) & set(executions)
        finally:
            await cluster.close()
