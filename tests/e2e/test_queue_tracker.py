"""The orchestrator's ExecutionTracker and the cluster view's probe against a real queue
and executors."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from queue_harness import Cluster

from bookstore import grpcutil
from bookstore.cluster_view.probe import ClusterProbe
from bookstore.cluster_view.state import Leader
from bookstore.grpcutil import Rejected, ServiceUnavailable
from bookstore.orchestrator.execution import ExecutionTracker, QueuedItem
from bookstore.settings import from_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


@pytest.fixture(autouse=True)
def as_the_orchestrator(cluster: Cluster) -> Iterator[None]:
    """The tracker and the cluster probe run in this process with the orchestrator's
    certificate, as in the orchestrator."""
    grpcutil.use_transport(cluster.as_orchestrator)
    yield
    grpcutil.use_transport(grpcutil.PLAINTEXT)


@pytest.fixture
async def tracker(cluster: Cluster) -> AsyncIterator[ExecutionTracker]:
    t = ExecutionTracker(from_env(cluster.env))
    await t.start()
    try:
        yield t
    finally:
        await t.close()


@pytest.fixture
async def probe(cluster: Cluster) -> AsyncIterator[ClusterProbe]:
    p = ClusterProbe(from_env(cluster.env))
    try:
        yield p
    finally:
        await p.close()


ITEMS = [QueuedItem("b1", "A book", 2), QueuedItem("b2", "Another", 1)]


async def reconnected(tracker: ExecutionTracker) -> None:
    """Until the tracker's channel has reconnected to a queue that was down: it retries
    within its back-off (at most 1 s). The harness's health probe does not wake it:
    gRPC shares no connection between TLS channels."""
    for _ in range(100):
        with contextlib.suppress(ServiceUnavailable):
            await tracker.status(str(uuid.uuid4()))
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("the tracker never reached the queue")


async def test_an_enqueued_order_is_confirmed_executed(
    cluster: Cluster, tracker: ExecutionTracker
) -> None:
    await cluster.start()
    order_id = str(uuid.uuid4())
    await tracker.enqueue(order_id, ITEMS, "Ann")
    await tracker.enqueue(order_id, ITEMS, "Ann")  # idempotent
    info = await tracker.wait_executed(order_id, timeout=10.0)
    assert info is not None and info.state == "executed"
    assert info.executor == 4 and info.epoch and info.sequence == 1 and info.executed_at
    assert await tracker.status(order_id) == info
    assert await tracker.wait_executed(order_id, timeout=0.1) == info
    assert await tracker.status(str(uuid.uuid4())) is None
    # Another orchestrator (or one restarted) learns of a past execution too.
    other = ExecutionTracker(from_env(cluster.env))
    await other.start()
    try:
        assert await other.wait_executed(order_id, timeout=5.0) == info
    finally:
        await other.close()


async def test_waiting_times_out_while_no_executor_runs(
    cluster: Cluster, tracker: ExecutionTracker
) -> None:
    await cluster.start_queue()
    await reconnected(tracker)
    order_id = str(uuid.uuid4())
    await tracker.enqueue(order_id, ITEMS, "Ann")
    assert await tracker.wait_executed(order_id, timeout=0.3) is None
    status = await tracker.status(order_id)
    assert status is not None and status.state == "queued"
    waiting = asyncio.create_task(tracker.wait_executed(order_id, timeout=15.0))
    await cluster.start_executor(1)
    info = await waiting
    assert info is not None and info.executor == 1


async def test_bad_orders_and_a_missing_queue_are_translated(cluster: Cluster) -> None:
    # An enqueue retries an unreachable queue for ORCHESTRATOR_ENQUEUE_RETRY_S (8 s by
    # default) before it answers unavailable; the test needs only that it does.
    tracker = ExecutionTracker(from_env({**cluster.env, "ORCHESTRATOR_ENQUEUE_RETRY_S": "0.5"}))
    await tracker.start()
    try:
        await _translated(cluster, tracker)
    finally:
        await tracker.close()


async def _translated(cluster: Cluster, tracker: ExecutionTracker) -> None:
    with pytest.raises(ServiceUnavailable):
        await tracker.enqueue(str(uuid.uuid4()), ITEMS, "Ann")
    await cluster.start_queue()
    await reconnected(tracker)
    with pytest.raises(Rejected) as info:
        await tracker.enqueue(str(uuid.uuid4()), [QueuedItem("b", "t", 0)], "Ann")
    assert info.value.code == "BAD_REQUEST"
    # A very long name or title is kept short, never a reason to lose an order.
    long_order = str(uuid.uuid4())
    await tracker.enqueue(long_order, [QueuedItem("b", "t" * 5000, 1)], "n" * 5000)
    queued = await tracker.status(long_order)
    assert queued is not None and queued.state == "queued"


async def test_the_feed_reconnects_after_the_queue_restarts(
    cluster: Cluster, tracker: ExecutionTracker
) -> None:
    await cluster.start()
    first = str(uuid.uuid4())
    await tracker.enqueue(first, ITEMS, "Ann")
    assert await tracker.wait_executed(first, timeout=10.0) is not None
    cluster.kill("queue")
    await cluster.start_queue()
    await reconnected(tracker)
    second = str(uuid.uuid4())
    await tracker.enqueue(second, ITEMS, "Bob")
    info = await tracker.wait_executed(second, timeout=15.0)
    assert info is not None and info.state == "executed"


async def test_cluster_view_shows_the_queue_the_replicas_and_the_elections(
    cluster: Cluster, tracker: ExecutionTracker, probe: ClusterProbe
) -> None:
    await cluster.start()

    async def led() -> bool:
        statuses = [await cluster.executor_status(i) for i in cluster.ids]
        settled = all(s is not None and s.leader_id == 4 for s in statuses)
        return settled and await cluster.leader() == 4

    await cluster.wait_for(led, 10.0)
    view = await probe.state()
    assert view.queue.healthy and view.queue.leader_id == 4
    assert view.leader == Leader(4, view.queue.epoch)
    assert [e.replica_id for e in view.executors] == [1, 2, 3, 4]
    assert all(e.alive and e.pid for e in view.executors)
    roles = {e.replica_id: e.role for e in view.executors}
    assert roles[4] == "leader" and "leader" not in (roles[1], roles[2], roles[3]), roles
    steps = view.elections
    assert any(s.step == "won" and s.replica_id == 4 for s in steps)
    assert [s.at for s in steps] == sorted(s.at for s in steps)

    cluster.kill("executor-2")
    view = await probe.state()
    dead = next(e for e in view.executors if e.replica_id == 2)
    assert dead.alive is False and dead.role is None

    # With no executor left, the queue's next orders are listed by priority.
    cluster.kill("executor-4")
    cluster.kill("executor-3")
    cluster.kill("executor-1")
    for books in (1, 5, 3):
        await tracker.enqueue(str(uuid.uuid4()), [QueuedItem("b", "t", books)], "n")
    view = await probe.state()
    assert [n.books for n in view.queue.next] == [5, 3, 1]
    assert view.queue.depth == 3
