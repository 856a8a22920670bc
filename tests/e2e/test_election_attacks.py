"""Attacks on the election from inside the network, against real processes.

One forged `Deliver{COORDINATOR, epoch=2^63}` to replica 4 used to set off a
tight re-registration loop whose epoch spread through PONGs, after which no
order was executed; a RegisterLeader with a foreign replica id took the epoch
from the real leader. Now, with mutual TLS on, an intruder without a
certificate gets nowhere, another service's certificate is refused for what
it may not call, and an executor's certificate cannot speak for another
replica; orders keep being executed throughout.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from queue_calls import enqueue
from queue_harness import Cluster
from tls_support import plaintext, transport

from bookstore import grpcutil
from bookstore.pb import common_pb2, executor_pb2, executor_pb2_grpc, queue_pb2, queue_pb2_grpc

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

FORGED_EPOCH = 2**63
# A call made with a certificate waits for its connection (a handshake that failed on
# a busy machine is tried again), so its answer is the server's: how long is no matter.
ARRIVE: dict[str, Any] = {"timeout": 30.0, "wait_for_ready": True}


async def _leader_is_4(cluster: Cluster) -> bool:
    return await cluster.leader() == 4


async def _executed(cluster: Cluster) -> None:
    """Enqueue one order and wait until it is executed (a stalled election would hold
    it for good: the module's timeout is the backstop)."""
    oid = await cluster.enqueue(1)
    assert cluster.history.outcomes[oid] == "ok"

    async def executed() -> bool:
        reply = await cluster.queue.GetOrder(common_pb2.OrderId(value=oid), timeout=1)
        return bool(reply.state == "executed")

    await cluster.wait_for(executed)


FORGED = executor_pb2.BullyMessage(
    kind=executor_pb2.BullyMessage.COORDINATOR, sender=3, leader=3, epoch=FORGED_EPOCH
)


async def _refused(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call
    return refused.value


class _As:
    """Stubs of the queue and of executor 4 over one transport (an identity or none)."""

    def __init__(self, cluster: Cluster, via: grpcutil.Transport) -> None:
        self.channels = [
            via.channel(cluster.queue_address),
            via.channel(cluster.executor_addresses[4]),
        ]
        self.queue = cast(
            "queue_pb2_grpc.OrderQueueAsyncStub", queue_pb2_grpc.OrderQueueStub(self.channels[0])
        )
        self.executor = cast(
            "executor_pb2_grpc.OrderExecutorAsyncStub",
            executor_pb2_grpc.OrderExecutorStub(self.channels[1]),
        )

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()


def _order(oid: str) -> queue_pb2.EnqueueRequest:
    item = common_pb2.OrderItem(book_id="b1", title="A book", quantity=1)
    return queue_pb2.EnqueueRequest(
        order=queue_pb2.QueuedOrder(order_id=common_pb2.OrderId(value=oid), items=[item])
    )


async def test_a_forged_coordinator_and_a_foreign_registration_do_not_stop_execution(
    cluster: Cluster,
) -> None:
    await cluster.start()
    await cluster.wait_for(lambda: _leader_is_4(cluster))
    await _executed(cluster)
    before = (await cluster.status()).epoch

    # No certificate: the handshake fails before any method is reached.
    intruder = _As(cluster, plaintext())
    for call in (
        intruder.executor.Deliver(FORGED, timeout=1.0),
        intruder.queue.RegisterLeader(queue_pb2.RegisterLeaderRequest(replica_id=3), timeout=1),
        enqueue(intruder.queue, _order("intruder"), timeout=1.0),
    ):
        assert (await _refused(call)).code() == grpc.StatusCode.UNAVAILABLE
    await intruder.close()
    await _executed(cluster)

    # A valid certificate of another service: refused by the policy.
    fraud = _As(cluster, transport(cluster.env, "fraud-detection"))
    for call in (
        fraud.queue.EnqueueBatch(
            queue_pb2.EnqueueBatchRequest(enqueues=[_order("fraud")]), **ARRIVE
        ),
        fraud.executor.Deliver(FORGED, **ARRIVE),
        fraud.queue.RegisterLeader(queue_pb2.RegisterLeaderRequest(replica_id=3), **ARRIVE),
    ):
        refused = await _refused(call)
        assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "spiffe://bookstore/fraud-detection may not call" in (refused.details() or "")
    await fraud.close()

    # Executor 1's certificate speaking for replica 3: refused, and nothing adopted.
    one = _As(cluster, transport(cluster.env, "order-executor-1"))
    refused = await _refused(one.executor.Deliver(FORGED, **ARRIVE))
    assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "order-executor/1 may not speak for order-executor replica 3" in (
        refused.details() or ""
    )
    refused = await _refused(
        one.queue.RegisterLeader(queue_pb2.RegisterLeaderRequest(replica_id=4), **ARRIVE)
    )
    assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
    await one.close()
    await _executed(cluster)

    # A replica's own certificate (stolen, say) gains nothing more: the epoch
    # comes from the queue, never from a message.
    three = _As(cluster, transport(cluster.env, "order-executor-3"))
    await three.executor.Deliver(FORGED, **ARRIVE)
    await three.close()
    await _calm_and_executing(cluster, before)


async def test_with_tls_off_a_forged_coordinator_and_a_foreign_id_are_still_fenced(
    tmp_path: Path,
) -> None:
    cluster = Cluster(tmp_path, env={"BOOKSTORE_TLS": "off"})
    try:
        await cluster.start()
        await cluster.wait_for(lambda: _leader_is_4(cluster))
        await _executed(cluster)
        before = (await cluster.status()).epoch
        await cluster.executor(4).Deliver(FORGED, timeout=1.0)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await cluster.queue.RegisterLeader(
                queue_pb2.RegisterLeaderRequest(replica_id=2**31), timeout=1.0
            )
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "UNKNOWN_REPLICA" in (refused.value.details() or "")
        await _calm_and_executing(cluster, before)
    finally:
        await cluster.close()


async def _calm_and_executing(cluster: Cluster, before: int) -> None:
    await _executed(cluster)
    # A second of calm later: no registration storm, no poisoned epoch anywhere.
    await asyncio.sleep(1.0)
    status = await cluster.status()
    assert status.leader_id == 4 and status.epoch - before <= 2
    for replica in cluster.ids:
        reply = await cluster.executor_status(replica)
        assert reply is not None and reply.epoch < FORGED_EPOCH
    await _executed(cluster)
    cluster.check_history()
