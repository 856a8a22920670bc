"""Executors doing work longer than a lease: the leader keeps its lease alive."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from queue_harness import Cluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


async def test_long_work_renews_the_lease_and_runs_each_order_once(tmp_path: Path) -> None:
    # One order at a time, so the second waits in the queue while the first is worked on.
    env = {
        "ORDER_EXECUTOR_WORK_S": "1.5",
        "ORDER_QUEUE_LEASE_S": "0.6",
        "ORDER_EXECUTOR_CONCURRENCY": "1",
    }
    cluster = Cluster(tmp_path, env=env)
    try:
        await cluster.start()

        async def leading() -> int | None:
            return await cluster.leader()

        await cluster.wait_for(leading, 10.0)
        first = await cluster.enqueue(2)
        second = await cluster.enqueue(1)

        async def working() -> bool:
            return (await cluster.status()).leased == 1

        await cluster.wait_for(working, 5.0)
        await asyncio.sleep(1.0)  # past the 0.6 s lease, still working on it
        status = await cluster.status()
        assert status.leased == 1 and status.depth == 2
        assert [o.order_id.value for o in status.next] == [second]  # not handed out again

        await cluster.wait_drained(timeout=15.0)
        executions = cluster.check_history()
        assert executions[first][2] == 1 and executions[second][2] == 2
        log = "".join(cluster.log(f"executor-{i}") for i in cluster.ids)
        assert log.count("duplicate=False") == 2 and "duplicate=True" not in log
    finally:
        await cluster.close()
