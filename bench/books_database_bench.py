"""The books database alone: orders/s and primary failover time.

Starts the 3 replicas as real processes (a temporary data directory: every
write fsynced on a majority), then
1. runs N concurrent clients for a while, each reserving and committing one
   order (two books) after the other: prints orders/s and latency percentiles;
2. SIGKILLs the primary K times, each time measuring the time from the kill
   to the next acknowledged write, then restarts the killed replica and waits
   until it has caught up: prints the median and the worst.

    .venv/bin/python bench/books_database_bench.py [--clients 50] [--seconds 10] [--kills 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "support"), str(ROOT / "tests" / "e2e")]

from books_database_harness import Replicas  # noqa: E402


async def orders(replicas: Replicas, clients: int, seconds: float) -> None:
    latencies: list[float] = []
    until = time.monotonic() + seconds

    async def client(c: int) -> None:
        n = 0
        while time.monotonic() < until:
            n += 1
            txn = f"bench-{c}-{n}"
            started = time.monotonic()
            if (await replicas.db.reserve(txn, {"b001": 1, "b002": 2}, epoch=1)).ok:
                await replicas.db.commit(txn, epoch=1)
            latencies.append(time.monotonic() - started)

    await asyncio.gather(*(client(c) for c in range(clients)))
    q = statistics.quantiles(latencies, n=100)
    print(
        f"{len(latencies) / seconds:.0f} orders/s (reserve + commit) at {clients} clients;"
        f" latency p50 / p95 / p99 {q[49] * 1000:.1f} / {q[94] * 1000:.1f} / {q[98] * 1000:.1f} ms"
    )


async def failovers(replicas: Replicas, kills: int) -> None:
    times: list[float] = []
    if kills == 0:
        return
    for k in range(kills):
        primary = await replicas.primary()
        started = time.monotonic()
        replicas.kill(primary)
        await replicas.admin.set_stock({"b003": k}, request_id=f"bench-failover-{k}")
        times.append(time.monotonic() - started)
        replicas.spawn(primary)
        await replicas.wait_serving(primary)
        await replicas.converged()
    print(
        f"primary SIGKILL -> next acknowledged write, {kills} kills:"
        f" median {statistics.median(times):.2f} s, worst {max(times):.2f} s"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--kills", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        replicas = Replicas(Path(tmp), initial_stock=10_000_000)
        try:
            await replicas.start()
            await replicas.primary()
            await orders(replicas, args.clients, args.seconds)
            await failovers(replicas, args.kills)
        finally:
            await replicas.close()


if __name__ == "__main__":
    asyncio.run(main())
