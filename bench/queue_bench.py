"""Executed orders per second through enqueue -> execute -> complete.

Starts the order queue and 4 executor replicas as real processes (a
temporary data directory: every acknowledgement fsynced), then runs N
concurrent clients for a while; each enqueues an order through the
orchestrator's ExecutionTracker and waits for its execution confirmation
before sending the next. Prints executed orders/s and latency percentiles.

    .venv/bin/python bench/queue_bench.py [--clients 50] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))

from queue_harness import Cluster

from bookstore.orchestrator.execution import ExecutionTracker, QueuedItem
from bookstore.settings import from_env


async def client(
    tracker: ExecutionTracker, until: float, latencies: list[float], lost: list[str]
) -> None:
    rng = random.Random()
    while time.monotonic() < until:
        order_id = str(uuid.uuid4())
        items = [QueuedItem("b1", "A book", rng.randint(1, 5))]
        t0 = time.monotonic()
        await tracker.enqueue(order_id, items, "Bench Client")
        info = await tracker.wait_executed(order_id, timeout=10.0)
        if info is None:
            lost.append(order_id)
        else:
            latencies.append(time.monotonic() - t0)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def main(clients: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory(prefix="bookstore-queue-bench-") as tmp:
        cluster = Cluster(Path(tmp))
        tracker = ExecutionTracker(from_env(cluster.env))
        try:
            await cluster.start()
            await cluster.wait_for(cluster.leader, 15.0)
            await tracker.start()
            latencies: list[float] = []
            lost: list[str] = []
            start = time.monotonic()
            await asyncio.gather(
                *(client(tracker, start + seconds, latencies, lost) for _ in range(clients))
            )
            elapsed = time.monotonic() - start
            status = await cluster.status()
            print(
                f"{clients} clients, {elapsed:.1f}s: {len(latencies)} orders executed"
                f" -> {len(latencies) / elapsed:.0f} executed orders/s"
                f" (queue: {status.executed} executed, depth {status.depth}; {len(lost)} late)"
            )
            if latencies:
                print(
                    "enqueue->executed latency:"
                    f" median {statistics.median(latencies) * 1000:.1f} ms,"
                    f" p99 {pct(latencies, 99) * 1000:.1f} ms,"
                    f" max {max(latencies) * 1000:.1f} ms"
                )
        finally:
            await tracker.close()
            await cluster.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    asyncio.run(main(args.clients, args.seconds))
