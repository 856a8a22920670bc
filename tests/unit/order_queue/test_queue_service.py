"""The queue's gRPC face: precise status codes and named result codes."""

from __future__ import annotations

import grpc
import pytest
from queue_calls import complete, enqueue

from bookstore.pb import common_pb2, queue_pb2, queue_pb2_grpc


def order(order_id: str, *quantities: int) -> queue_pb2.EnqueueRequest:
    return queue_pb2.EnqueueRequest(
        order=queue_pb2.QueuedOrder(
            order_id=common_pb2.OrderId(value=order_id),
            items=[common_pb2.OrderItem(book_id="b", title="t", quantity=q) for q in quantities],
            customer_name="n",
            books=999,  # ignored: the server computes the priority
        )
    )


async def test_enqueue_and_dequeue_over_grpc(stub: queue_pb2_grpc.OrderQueueAsyncStub) -> None:
    reply = await enqueue(stub, order("a", 2, 3))
    assert (reply.sequence, reply.duplicate) == (1, False)
    assert (await enqueue(stub, order("a", 2, 3))).duplicate
    epoch = (await stub.RegisterLeader(queue_pb2.RegisterLeaderRequest(replica_id=2))).epoch
    got = await stub.Dequeue(queue_pb2.DequeueRequest(replica_id=2, epoch=epoch, wait_ms=10))
    assert got.has_order and got.order.books == 5 and got.lease_ms == 2000
    lease = queue_pb2.LeaseRequest(
        replica_id=2, epoch=epoch, lease_id=got.lease_id, order_id=got.order.order_id
    )
    done = await complete(stub, lease)
    assert done.execution.executor == 2 and done.execution.sequence == 1
    status = await stub.GetOrder(common_pb2.OrderId(value="a"))
    assert status.state == "executed" and status.execution.epoch == epoch


async def test_one_dequeue_leases_up_to_max_orders_by_priority(
    stub: queue_pb2_grpc.OrderQueueAsyncStub,
) -> None:
    for order_id, books in (("small", 1), ("big", 9), ("mid", 4)):
        await enqueue(stub, order(order_id, books))
    epoch = (await stub.RegisterLeader(queue_pb2.RegisterLeaderRequest(replica_id=2))).epoch
    ask = queue_pb2.DequeueRequest(replica_id=2, epoch=epoch, wait_ms=10, max_orders=2)
    got = await stub.Dequeue(ask)
    leased = [(got.order, got.lease_id)] + [(m.order, m.lease_id) for m in got.more]
    assert [o.order_id.value for o, _ in leased] == ["big", "mid"]
    assert len({lease_id for _, lease_id in leased}) == 2
    rest = await stub.Dequeue(ask)
    assert rest.order.order_id.value == "small" and not rest.more
    assert not (await stub.Dequeue(ask)).has_order


async def test_a_parked_dequeue_takes_every_order_of_the_enqueue_that_wakes_it(
    stub: queue_pb2_grpc.OrderQueueAsyncStub,
) -> None:
    epoch = (await stub.RegisterLeader(queue_pb2.RegisterLeaderRequest(replica_id=2))).epoch
    parked = stub.Dequeue(
        queue_pb2.DequeueRequest(replica_id=2, epoch=epoch, wait_ms=5000, max_orders=8)
    )
    batch = queue_pb2.EnqueueBatchRequest(enqueues=[order(f"o{i}", 1) for i in range(3)])
    await stub.EnqueueBatch(batch)
    got = await parked
    assert [got.order.order_id.value] + [m.order.order_id.value for m in got.more] == [
        "o0",
        "o1",
        "o2",
    ]


@pytest.mark.parametrize("quantities", [(0,), (-3,), (100_000,), ()])
async def test_malformed_orders_are_invalid_argument(
    stub: queue_pb2_grpc.OrderQueueAsyncStub, quantities: tuple[int, ...]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await enqueue(stub, order("x", *quantities))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (info.value.details() or "").startswith("BAD_REQUEST: ")
    assert (await stub.Status(common_pb2.Empty())).depth == 0


async def test_stale_epoch_is_failed_precondition(
    stub: queue_pb2_grpc.OrderQueueAsyncStub,
) -> None:
    await enqueue(stub, order("a", 1))
    await stub.RegisterLeader(queue_pb2.RegisterLeaderRequest(replica_id=1))
    await stub.RegisterLeader(queue_pb2.RegisterLeaderRequest(replica_id=1))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Dequeue(queue_pb2.DequeueRequest(replica_id=1, epoch=1, wait_ms=0))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert info.value.details() == "STALE_EPOCH: current epoch is 2"
    status = await stub.Status(common_pb2.Empty())
    assert (status.depth, status.leased, status.epoch) == (1, 0, 2)


async def test_unknown_order_is_not_found(stub: queue_pb2_grpc.OrderQueueAsyncStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetOrder(common_pb2.OrderId(value="nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert (info.value.details() or "").startswith("UNKNOWN_ORDER: ")
