"""The batch calls: one transaction per batch, each operation answered as its unary call."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import TypeAlias, cast

import grpc
import pytest
import store_calls
from queue_calls import enqueue as enqueue_one
from queue_fakes import FakeClock
from store_calls import dequeue

from bookstore import grpcutil
from bookstore.order_queue.client import Enqueues, LeaderCalls, rpc_error
from bookstore.order_queue.service import MAX_BATCH_OPS, OrderQueueServicer, create_server
from bookstore.order_queue.state import Item
from bookstore.order_queue.store import QueueStore
from bookstore.pb import common_pb2, queue_pb2, queue_pb2_grpc

Stub: TypeAlias = "queue_pb2_grpc.OrderQueueAsyncStub"
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION.value[0]


def enqueue(order_id: str, *quantities: int) -> queue_pb2.EnqueueRequest:
    return queue_pb2.EnqueueRequest(
        order=queue_pb2.QueuedOrder(
            order_id=common_pb2.OrderId(value=order_id),
            items=[common_pb2.OrderItem(book_id="b", title="t", quantity=q) for q in quantities],
            customer_name="n",
        )
    )


def decide(order_id: str, decision: str, epoch: int) -> queue_pb2.LeaderOp:
    return queue_pb2.LeaderOp(
        log_decision=queue_pb2.LogDecisionRequest(
            order_id=common_pb2.OrderId(value=order_id), decision=decision, epoch=epoch
        )
    )


def lease(replica: int, epoch: int, lease_id: str, order_id: str) -> queue_pb2.LeaseRequest:
    return queue_pb2.LeaseRequest(
        replica_id=replica,
        epoch=epoch,
        lease_id=lease_id,
        order_id=common_pb2.OrderId(value=order_id),
    )


def complete(replica: int, epoch: int, lease_id: str, order_id: str) -> queue_pb2.LeaderOp:
    return queue_pb2.LeaderOp(complete=lease(replica, epoch, lease_id, order_id))


def errors(outcomes: Iterable[queue_pb2.LeaderOutcome]) -> list[tuple[int, str]]:
    """(code, details) of each refused operation."""
    return [(o.error.code, o.error.details) for o in outcomes if o.HasField("error")]


async def leader_with_orders(store: QueueStore, *order_ids: str) -> int:
    for order_id in order_ids:
        await store_calls.enqueue(store, order_id, [Item("b", "t", 1)], "n")
    return await store.register_leader(1)


async def test_an_enqueue_batch_is_one_transaction_answered_per_order(
    store: QueueStore, stub: Stub
) -> None:
    await enqueue_one(stub, enqueue("old", 1))
    commits = store.disk.commits
    reply = await stub.EnqueueBatch(
        queue_pb2.EnqueueBatchRequest(
            enqueues=[enqueue("a", 1), enqueue("bad", 0), enqueue("a", 1), enqueue("old", 1)]
        )
    )
    assert store.disk.commits == commits + 1
    first, bad, again, old = reply.outcomes
    assert (first.reply.sequence, first.reply.duplicate) == (2, False)
    # A malformed order is refused alone.
    assert bad.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert bad.error.details.startswith("BAD_REQUEST: quantity 0")
    # Idempotent inside the batch and across batches: the first sequence, duplicate.
    assert (again.reply.sequence, again.reply.duplicate) == (2, True)
    assert (old.reply.sequence, old.reply.duplicate) == (1, True)
    assert (await stub.Status(common_pb2.Empty())).depth == 2


async def test_batched_orders_keep_the_order_more_books_first_then_arrival(
    store: QueueStore, stub: Stub
) -> None:
    await enqueue_one(stub, enqueue("early-1", 1))
    await stub.EnqueueBatch(
        queue_pb2.EnqueueBatchRequest(
            enqueues=[enqueue("one", 1), enqueue("three", 3), enqueue("two", 1, 1)]
        )
    )
    await enqueue_one(stub, enqueue("late-3", 3))
    epoch = await store.register_leader(1)
    taken = []
    while (got := await dequeue(store, 1, epoch, 0)) is not None:
        taken.append(got[0].order_id)
    assert taken == ["three", "late-3", "two", "early-1", "one"]


class Plaintext:
    """The servicer context of a call without TLS (nobody's identity to check)."""

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}


async def test_a_waiting_dequeue_hands_out_a_batched_orders_trace_context(
    store: QueueStore,
) -> None:
    servicer = OrderQueueServicer(store)
    epoch = await store.register_leader(1)
    polling = asyncio.create_task(
        servicer.Dequeue(
            queue_pb2.DequeueRequest(replica_id=1, epoch=epoch, wait_ms=5000), Plaintext()
        )
    )
    await asyncio.sleep(0)  # the long poll waits for an order
    traced = enqueue("a", 1)
    traced.order.trace_context = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    await servicer.EnqueueBatch(queue_pb2.EnqueueBatchRequest(enqueues=[traced]), Plaintext())
    got = await polling
    assert got.order.order_id.value == "a"
    assert got.order.trace_context == traced.order.trace_context


async def test_a_stale_epoch_refuses_only_its_own_operation(store: QueueStore, stub: Stub) -> None:
    old = await leader_with_orders(store, "o1", "o2")
    epoch = await store.register_leader(1)  # a new reign: `old` is stale
    taken = await dequeue(store, 1, epoch, 0)
    assert taken is not None
    order, held = taken
    assert order.order_id == "o1"
    reply = await stub.LeaderBatch(
        queue_pb2.LeaderBatchRequest(
            ops=[
                decide("o1", "commit", old),
                decide("o2", "abort", epoch),
                complete(1, old, held.lease_id, "o1"),
                complete(1, epoch, "someone-else", "o1"),
                complete(1, epoch, held.lease_id, "o1"),
            ]
        )
    )
    stale_decision, logged, stale_completion, lost, done = reply.outcomes
    stale = (FAILED_PRECONDITION, f"STALE_EPOCH: current epoch is {epoch}")
    assert (stale_decision.error.code, stale_decision.error.details) == stale
    assert (stale_completion.error.code, stale_completion.error.details) == stale
    assert (logged.decision.decision, logged.decision.epoch) == ("abort", epoch)
    assert lost.error.code == FAILED_PRECONDITION
    assert lost.error.details.startswith("LEASE_LOST: ")
    assert (done.complete.duplicate, done.complete.execution.epoch) == (False, epoch)
    assert await store.get_decision("o1") is None
    assert (await store.get_order("o1")).state == "executed"


async def test_a_deposed_leaders_operations_are_refused(store: QueueStore, stub: Stub) -> None:
    old = await leader_with_orders(store, "o1")
    taken = await dequeue(store, 1, old, 0)
    assert taken is not None
    new = await store.register_leader(2)
    ops = [decide("o1", "commit", old), complete(1, old, taken[1].lease_id, "o1")]
    batched = await stub.LeaderBatch(queue_pb2.LeaderBatchRequest(ops=ops))
    stale = (FAILED_PRECONDITION, f"STALE_EPOCH: current epoch is {new}")
    assert errors(batched.outcomes) == [stale, stale]
    # The new leader's operation in the very same batch goes through.
    mixed = await stub.LeaderBatch(
        queue_pb2.LeaderBatchRequest(ops=[ops[0], decide("o1", "abort", new)])
    )
    assert len(errors(mixed.outcomes)) == 1 and mixed.outcomes[1].decision.epoch == new


async def test_leader_operations_are_idempotent_inside_and_across_batches(
    store: QueueStore, stub: Stub
) -> None:
    epoch = await leader_with_orders(store, "o1")
    taken = await dequeue(store, 1, epoch, 0)
    assert taken is not None
    lease_id = taken[1].lease_id
    commits = store.disk.commits
    ops = [
        decide("o1", "commit", epoch),
        decide("o1", "abort", epoch),
        complete(1, epoch, lease_id, "o1"),
        complete(1, epoch, lease_id, "o1"),
    ]
    first = await stub.LeaderBatch(queue_pb2.LeaderBatchRequest(ops=ops))
    assert store.disk.commits == commits + 1
    d1, d2, c1, c2 = first.outcomes
    assert d1.decision == d2.decision and d1.decision.decision == "commit"
    assert (c1.complete.duplicate, c2.complete.duplicate) == (False, True)
    assert c1.complete.execution == c2.complete.execution
    replay = await stub.LeaderBatch(queue_pb2.LeaderBatchRequest(ops=ops))
    assert [o.decision for o in replay.outcomes[:2]] == [d1.decision, d1.decision]
    assert replay.outcomes[2].complete.duplicate and replay.outcomes[3].complete.duplicate
    assert store.status().executed == 1


async def test_unknown_orders_replicas_and_empty_operations_are_refused_alone(
    db_path: Path, clock: FakeClock
) -> None:
    store = QueueStore(db_path, clock=clock, replica_ids=[1, 2])
    await store.open()
    server, _, port = create_server("127.0.0.1:0", store)
    await server.start()
    channel = grpcutil.channel(f"127.0.0.1:{port}")
    try:
        stub = cast("Stub", queue_pb2_grpc.OrderQueueStub(channel))
        epoch = await leader_with_orders(store, "o1")
        reply = await stub.LeaderBatch(
            queue_pb2.LeaderBatchRequest(
                ops=[
                    decide("nope", "commit", epoch),
                    complete(7, epoch, "l", "o1"),
                    queue_pb2.LeaderOp(),
                    decide("o1", "commit", epoch),
                ]
            )
        )
        unknown, foreign, empty, logged = reply.outcomes
        assert unknown.error.code == grpc.StatusCode.NOT_FOUND.value[0]
        assert unknown.error.details == "UNKNOWN_ORDER: no order nope"
        assert foreign.error.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
        assert foreign.error.details.startswith("UNKNOWN_REPLICA: replica 7")
        assert empty.error.details.startswith("BAD_REQUEST: ")
        assert logged.decision.decision == "commit"
    finally:
        await channel.close()
        await server.stop(None)
        await store.close()


async def test_a_batch_is_never_split_across_transactions(db_path: Path, clock: FakeClock) -> None:
    store = QueueStore(db_path, clock=clock, group_commit_max=1)
    await store.open()
    try:
        orders = [store.order(f"o{i}", [Item("b", "t", 1)], "n") for i in range(5)]
        outcomes = await store.enqueue_all(orders)
        assert [seq for seq, _ in outcomes] == [1, 2, 3, 4, 5]
        assert store.disk.commits == 1
    finally:
        await store.close()


async def test_a_full_disk_refuses_every_operation_of_the_batch(
    store: QueueStore, stub: Stub
) -> None:
    orders = [f"o{i}" for i in range(20)]
    epoch = await leader_with_orders(store, *orders)
    db = store.disk.db
    assert db is not None
    # The file may not grow by one more page: what SQLite does on ENOSPC.
    (pages,) = db.conn.execute("PRAGMA page_count").fetchone()
    db.conn.execute(f"PRAGMA max_page_count = {pages}")
    big = enqueue("big", *([1] * 100))
    for item in big.order.items:
        item.title = "T" * 256
    reply = await stub.EnqueueBatch(queue_pb2.EnqueueBatchRequest(enqueues=[big, enqueue("b", 1)]))
    decisions = [decide(o, "abort", epoch) for o in orders]
    for op in decisions:
        op.log_decision.reason = "R" * 512
    decided = await stub.LeaderBatch(queue_pb2.LeaderBatchRequest(ops=decisions))
    for outcome in [*reply.outcomes, *decided.outcomes]:
        assert outcome.error.code == grpc.StatusCode.UNAVAILABLE.value[0]
        assert outcome.error.details.startswith("DISK_FULL: ")
    # The client raises what a unary call raised: the orchestrator's 503 DISK_FULL.
    error = grpcutil.translate("order-queue", rpc_error(reply.outcomes[1].error))
    assert isinstance(error, grpcutil.ServiceUnavailable)
    assert error.detail.startswith("DISK_FULL: ")
    assert store.status().depth == 20 and await store.get_decision("o1") is None
    db.conn.execute(f"PRAGMA max_page_count = {pages * 1000}")  # space again
    again = await stub.EnqueueBatch(queue_pb2.EnqueueBatchRequest(enqueues=[enqueue("b", 1)]))
    assert again.outcomes[0].reply.sequence == 21


async def test_a_batch_too_large_is_refused_whole(stub: Stub) -> None:
    request = queue_pb2.EnqueueBatchRequest(
        enqueues=[enqueue(f"o{i}", 1) for i in range(MAX_BATCH_OPS + 1)]
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.EnqueueBatch(request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (await stub.Status(common_pb2.Empty())).depth == 0


# -- the clients -------------------------------------------------------------------------


async def test_concurrent_enqueues_share_calls_and_each_gets_its_answer(
    store: QueueStore, stub: Stub
) -> None:
    enqueues = Enqueues(lambda: stub, timeout_s=5.0)
    requests = [enqueue(f"o{i}", 1) for i in range(10)] + [enqueue("bad", 0)]
    # Two batches leave at once (one call each); the others wait for them, together.
    outcomes = await asyncio.gather(
        *(enqueues.enqueue(r) for r in requests), return_exceptions=True
    )
    replies = [o for o in outcomes if isinstance(o, queue_pb2.EnqueueReply)]
    assert sorted(r.sequence for r in replies) == list(range(1, 11))
    bad = outcomes[10]
    assert isinstance(bad, grpc.aio.AioRpcError)
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (bad.details() or "").startswith("BAD_REQUEST: ")
    assert enqueues.coalescer.batches == 3 and enqueues.coalescer.requests == 11
    await enqueues.close()


async def test_the_leaders_calls_raise_each_operations_refusal(
    store: QueueStore, stub: Stub
) -> None:
    epoch = await leader_with_orders(store, "o1")
    calls = LeaderCalls(lambda: stub, timeout_s=5.0)
    logged = await calls.log_decision(decide("o1", "commit", epoch).log_decision)
    assert logged.decision == "commit"
    stale = lease(1, epoch + 1, "l", "o1")
    with pytest.raises(grpc.aio.AioRpcError) as batched:
        await calls.complete(stale)
    assert batched.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert batched.value.details() == f"STALE_EPOCH: current epoch is {epoch}"
    error = grpcutil.translate("order-queue", batched.value)
    assert isinstance(error, grpcutil.Rejected) and error.code == "STALE_EPOCH"
    await calls.close()


async def test_a_whole_call_failure_reaches_every_caller() -> None:
    channel = grpcutil.channel("127.0.0.1:9")  # nobody listens
    try:
        stub = cast("Stub", queue_pb2_grpc.OrderQueueStub(channel))
        calls = LeaderCalls(lambda: stub, timeout_s=1.0)
        outcomes = await asyncio.gather(
            calls.log_decision(decide("o1", "commit", 1).log_decision),
            calls.complete(lease(1, 1, "l", "o1")),
            return_exceptions=True,
        )
        for outcome in outcomes:
            assert isinstance(outcome, grpc.aio.AioRpcError)
            error = grpcutil.translate("order-queue", outcome)
            assert isinstance(error, grpcutil.ServiceUnavailable)
    finally:
        await channel.close()
