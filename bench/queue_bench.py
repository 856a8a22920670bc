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
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))

from queue_harness import Cluster

from bookstore import grpcutil
from bookstore.orchestrator.execution import ExecutionTracker, QueuedItem
from bookstore.settings import from_env


async def client(
    tracker: ExecutionTracker,
    until: float,
    latencies: list[float],
    by_books: dict[int, list[float]],
    lost: list[str],
) -> None:
    rng = random.Random()
    while time.monotonic() < until:
        order_id = str(uuid.uuid4())
        books = rng.randint(1, 5)
        items = [QueuedItem("b1", "A book", books)]
        t0 = time.monotonic()
        await tracker.enqueue(order_id, items, "Bench Client")
        info = await tracker.wait_executed(order_id, timeout=10.0)
        if info is None:
            lost.append(order_id)
        else:
            latencies.append(time.monotonic() - t0)
            by_books.setdefault(books, []).append(latencies[-1])


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def main(clients: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory(prefix="bookstore-queue-bench-") as tmp:
        cluster = Cluster(Path(tmp))
        # The tracker speaks to the queue as the orchestrator does: with its certificate.
        grpcutil.use_transport(cluster.as_orchestrator)
        tracker = ExecutionTracker(from_env(cluster.env))
        try:
            await cluster.start()
            await cluster.wait_for(cluster.leader, 15.0)
            await tracker.start()
            latencies: list[float] = []
            lost: list[str] = []
            by_books: dict[int, list[float]] = {}
            start = time.monotonic()
            await asyncio.gather(
                *(
                    client(tracker, start + seconds, latencies, by_books, lost)
                    for _ in range(clients)
                )
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
                # Strict priority: under saturation the smallest orders wait longest.
                for books, values in sorted(by_books.items(), reverse=True):
                    print(
                        f"  {books} books: {len(values)} orders,"
                        f" median {statistics.median(values) * 1000:.1f} ms,"
                        f" p99 {pct(values, 99) * 1000:.1f} ms"
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
