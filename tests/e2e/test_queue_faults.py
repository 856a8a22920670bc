"""The queue and 4 executor replicas as real processes, under faults.

Every test records what each enqueue was told and ends with the check:
acknowledged => executed exactly once; nothing executed that was not sent.
"""

from __future__ import annotations

import asyncio
import random
import signal
from pathlib import Path

import pytest
from queue_harness import Cluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


async def leader_is(cluster: Cluster, replica: int) -> None:
    async def check() -> bool:
        return await cluster.leader() == replica

    await cluster.wait_for(check)


async def told(cluster: Cluster, outcome: str, count: int) -> None:
    """Until `count` enqueues were told `outcome` ("ok", "failed", "unknown")."""

    async def enough() -> bool:
        return sum(1 for o in cluster.history.outcomes.values() if o == outcome) >= count

    await cluster.wait_for(enough)


async def executed_by(
    cluster: Cluster, replica: int, epoch: int | None = None, orders: int = 5
) -> None:
    """Until `replica` (with `epoch`, if given) has executed `orders` orders."""

    async def done() -> bool:
        return (
            sum(
                1
                for executor, at_epoch, _, _ in cluster.executions().values()
                if executor == replica and epoch in (None, at_epoch)
            )
            >= orders
        )

    await cluster.wait_for(done)


class Producer:
    """Enqueues orders at a steady trickle until stopped."""

    def __init__(self, cluster: Cluster, every: float = 0.02, concurrency: int = 1) -> None:
        self.cluster = cluster
        self.every = every
        self.concurrency = concurrency
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def _run(self) -> None:
        rng = random.Random(7)
        while not self._stop.is_set():
            await self.cluster.enqueue(rng.randint(1, 5), timeout=1.0)
            await asyncio.sleep(self.every)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run()) for _ in range(self.concurrency)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


async def test_killing_the_leader_elects_a_new_one_and_a_restart_takes_back(
    cluster: Cluster,
) -> None:
    await cluster.start()
    await leader_is(cluster, 4)
    for _ in range(5):
        await cluster.enqueue(2)
    await cluster.wait_drained()

    cluster.kill("executor-4")
    await leader_is(cluster, 3)
    later = [await cluster.enqueue(1) for _ in range(5)]
    await cluster.wait_drained()
    executions = cluster.check_history()
    assert {executions[o][0] for o in later} == {3}

    await cluster.start_executor(4)
    await leader_is(cluster, 4)
    last = [await cluster.enqueue(3) for _ in range(5)]
    await cluster.wait_drained()
    executions = cluster.check_history()
    assert {executions[o][0] for o in last} == {4}
    assert "step=won" in cluster.log("executor-3")


async def test_a_paused_leader_cannot_complete_and_every_order_runs_once(
    tmp_path: Path,
) -> None:
    cluster = Cluster(tmp_path, env={"ORDER_EXECUTOR_WORK_S": "0.01"})
    try:
        await cluster.start()
        await leader_is(cluster, 4)
        old_epoch = (await cluster.status()).epoch
        producer = Producer(cluster)
        producer.start()
        await executed_by(cluster, 4, old_epoch)  # orders flowing

        cluster.signal("executor-4", signal.SIGSTOP)
        await leader_is(cluster, 3)
        await executed_by(cluster, 3)  # orders flowing past the failure timeout
        cluster.signal("executor-4", signal.SIGCONT)
        # The highest id, awake again, leads with a fresh epoch.
        await leader_is(cluster, 4)
        new_epoch = (await cluster.status()).epoch
        assert new_epoch > old_epoch + 1
        await executed_by(cluster, 4, new_epoch)
        await producer.stop()
        await cluster.wait_drained()

        executions = cluster.check_history()
        assert len(executions) >= 20
        # The woken leader completed nothing with its old epoch after the pause: in the
        # queue's order of executions, every one of the old epoch comes before any other.
        old = [seq for _, epoch, seq, _ in executions.values() if epoch == old_epoch]
        later = [seq for _, epoch, seq, _ in executions.values() if epoch > old_epoch]
        assert old and later and max(old) < min(later)
        assert any(e[0] == 3 for e in executions.values())
    finally:
        await cluster.close()


async def test_killing_the_queue_under_load_loses_nothing_acknowledged(
    cluster: Cluster,
) -> None:
    await cluster.start()
    await leader_is(cluster, 4)
    producer = Producer(cluster, every=0.005, concurrency=5)
    producer.start()
    await told(cluster, "ok", 30)
    cluster.kill("queue")
    await told(cluster, "failed", 1)  # refused while it is down
    await cluster.start_queue()
    await told(cluster, "ok", sum(1 for o in cluster.history.outcomes.values() if o == "ok") + 20)
    await producer.stop()
    await cluster.wait_drained(timeout=30.0)
    executions = cluster.check_history()
    outcomes = list(cluster.history.outcomes.values())
    assert outcomes.count("ok") >= 50
    assert outcomes.count("ok") < len(outcomes)  # some were refused while it was down
    assert len(executions) >= outcomes.count("ok")


async def test_killing_two_replicas_at_once_still_drains_the_backlog(
    cluster: Cluster,
) -> None:
    await cluster.start()
    await leader_is(cluster, 4)
    for i in range(30):
        await cluster.enqueue(1 + i % 5)
    cluster.kill("executor-4")
    cluster.kill("executor-3")
    late = [await cluster.enqueue(1 + i % 5) for i in range(30)]
    await cluster.wait_drained(timeout=20.0)
    executions = cluster.check_history()
    assert len(executions) == 60
    assert {executions[o][0] for o in late} == {2}


async def test_orders_waiting_for_the_executors_run_largest_first_then_by_arrival(
    cluster: Cluster,
) -> None:
    await cluster.start_queue()
    books = [b for b in range(1, 6) for _ in range(5)]
    random.Random(11).shuffle(books)
    arrival = [await cluster.enqueue(b) for b in books]
    assert cluster.history.acknowledged() == set(arrival)
    await asyncio.gather(*(cluster.start_executor(i) for i in cluster.ids))
    await cluster.wait_drained()
    executions = cluster.check_history()
    by_execution = sorted(arrival, key=lambda o: executions[o][2])
    expected = sorted(arrival, key=lambda o: (-cluster.history.books[o], arrival.index(o)))
    assert by_execution == expected
