"""Attacks on the election from inside the network, against real processes.

One forged `Deliver{COORDINATOR, epoch=2^63}` to replica 4 used to set off a
tight re-registration loop whose epoch spread through PONGs, after which no
order was executed; a RegisterLeader with a foreign replica id took the epoch
from the real leader. Now orders keep being executed within 2 s.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from queue_harness import Cluster

from bookstore.pb import common_pb2, executor_pb2, queue_pb2

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

FORGED_EPOCH = 2**63
EXECUTED_WITHIN_S = 2.0  # the bound for "orders keep being executed"


async def _leader_is_4(cluster: Cluster) -> bool:
    return await cluster.leader() == 4


async def _executed_within(cluster: Cluster, seconds: float) -> None:
    """Enqueue one order and wait (at most `seconds`) until it is executed."""
    oid = await cluster.enqueue(1)
    assert cluster.history.outcomes[oid] == "ok"

    async def executed() -> bool:
        reply = await cluster.queue.GetOrder(common_pb2.OrderId(value=oid), timeout=1)
        return bool(reply.state == "executed")

    await cluster.wait_for(executed, seconds)


async def test_a_forged_coordinator_and_a_foreign_registration_do_not_stop_execution(
    cluster: Cluster,
) -> None:
    await cluster.start()
    await cluster.wait_for(lambda: _leader_is_4(cluster), 10.0)
    await _executed_within(cluster, 5.0)
    before = (await cluster.status()).epoch

    forged = executor_pb2.BullyMessage(
        kind=executor_pb2.BullyMessage.COORDINATOR, sender=3, leader=3, epoch=FORGED_EPOCH
    )
    await cluster.executor(4).Deliver(forged, timeout=1.0)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await cluster.queue.RegisterLeader(
            queue_pb2.RegisterLeaderRequest(replica_id=2**31), timeout=1.0
        )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "UNKNOWN_REPLICA" in (refused.value.details() or "")

    await _executed_within(cluster, EXECUTED_WITHIN_S)
    # A second of calm later: no registration storm, no poisoned epoch anywhere.
    await asyncio.sleep(1.0)
    status = await cluster.status()
    assert status.leader_id == 4 and status.epoch - before <= 2
    for replica in cluster.ids:
        reply = await cluster.executor_status(replica)
        assert reply is not None and reply.epoch < FORGED_EPOCH
    await _executed_within(cluster, EXECUTED_WITHIN_S)
    cluster.check_history()
