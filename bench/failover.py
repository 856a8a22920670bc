"""Failover time: leader SIGKILL -> the first order executed by a new leader.

Starts the order queue and 4 executor replicas as real processes (free
ports, a temporary data directory) with the three books-database replicas
and payment, so that every order is executed as a two-phase commit and the
leader dies with transactions in flight (`--no-transactions`: the queue and
executors alone, as before two-phase commit). Keeps a trickle of orders flowing,
SIGKILLs the current leader again and again (restarting it after each kill,
so it takes leadership back) and prints each failover time with the median
and the worst.

    .venv/bin/python bench/failover.py [--kills 10] [--trickle-ms 20] [--no-transactions]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
sys.path.insert(0, str(ROOT / "tests" / "support"))

from queue_harness import Cluster  # noqa: E402

from bookstore.pb import queue_pb2  # noqa: E402


class Feed:
    """Every execution the queue records, stamped with when we heard of it."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.records: list[tuple[float, int, int]] = []  # (monotonic, executor, epoch)
        self.changed = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                async for r in self.cluster.queue.WatchExecutions(queue_pb2.WatchRequest()):
                    self.records.append((time.monotonic(), r.executor, r.epoch))
                    self.changed.set()
            except Exception:
                await asyncio.sleep(0.1)

    async def first_after(
        self, t0: float, pred: Callable[[tuple[float, int, int]], bool], timeout: float
    ) -> tuple[float, int, int]:
        deadline = time.monotonic() + timeout
        while True:
            for rec in self.records:
                if rec[0] >= t0 and pred(rec):
                    return rec
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no execution by a new leader")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)


Record = tuple[float, int, int]


def by_epoch(epoch: int) -> Callable[[Record], bool]:
    return lambda r: r[2] == epoch


def by_successor(old: int, epoch: int) -> Callable[[Record], bool]:
    return lambda r: r[1] != old and r[2] > epoch


async def current(cluster: Cluster) -> tuple[int, int] | None:
    """(leader, epoch) when the queue's leader calls itself leader with that epoch."""
    q = await cluster.status()
    s = await cluster.executor_status(q.leader_id) if q.leader_id else None
    if s is not None and s.role == "leader" and s.epoch == q.epoch:
        return int(q.leader_id), int(q.epoch)
    return None


async def led_by(cluster: Cluster, replica: int) -> tuple[int, int] | None:
    """`current`, once `replica` is the leader."""
    now = await current(cluster)
    return now if now is not None and now[0] == replica else None


async def trickle(cluster: Cluster, every: float) -> None:
    while True:
        await cluster.enqueue(1, timeout=1.0)
        await asyncio.sleep(every)


async def main(kills: int, trickle_ms: int, transactions: bool) -> None:
    tmp = tempfile.mkdtemp(prefix="bookstore-failover-")
    ok = False
    try:
        cluster = Cluster(Path(tmp), transactions=transactions)
        try:
            await cluster.start()
            feed = Feed(cluster)
            tasks = [
                asyncio.create_task(feed.run()),
                asyncio.create_task(trickle(cluster, trickle_ms / 1000)),
            ]
            times: list[float] = []
            for n in range(1, kills + 1):
                leader, epoch = await cluster.wait_for(lambda: current(cluster), 15.0)
                # The leader is working: wait for one of its executions.
                await feed.first_after(time.monotonic(), by_epoch(epoch), 10.0)
                t_kill = time.monotonic()
                cluster.kill(f"executor-{leader}")
                rec = await feed.first_after(t_kill, by_successor(leader, epoch), 15.0)
                took = rec[0] - t_kill
                times.append(took)
                print(f"kill {n:2d}: leader {leader} -> {rec[1]} executing after {took:.3f}s")
                await cluster.start_executor(leader)
                # The restarted replica calls an election and takes leadership back (it has
                # the highest id): wait for that, not for its successor still leading.
                await cluster.wait_for(functools.partial(led_by, cluster, leader), 30.0)
                await asyncio.sleep(1.0)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await cluster.wait_drained()  # the last orders' transactions finish
            executions = cluster.check_history()
            ok = True
            print(
                f"failover over {len(times)} kills: median {statistics.median(times):.3f}s,"
                f" worst {max(times):.3f}s, best {min(times):.3f}s"
                f" ({len(executions)} orders executed, each exactly once)"
            )
        finally:
            await cluster.close()
    finally:
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"logs kept in {tmp}", file=sys.stderr)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--trickle-ms", type=int, default=20)
    parser.add_argument(
        "--no-transactions", action="store_true", help="orders without payment: no 2PC"
    )
    args = parser.parse_args()
    asyncio.run(main(args.kills, args.trickle_ms, not args.no_transactions))
