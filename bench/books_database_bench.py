"""The books database alone: orders/s and primary failover time.

Starts the 3 replicas as real processes (a temporary data directory: every
write fsynced on a majority), then
1. runs N concurrent clients for a while, each reserving and committing one
   order (two books) after the other: prints orders/s and latency percentiles;
2. SIGKILLs the primary K times, each time measuring the time from the kill
   to the next acknowledged write, then restarts the killed replica and waits
   until it has caught up: prints the median and the worst;
3. with --history N: stops one backup, takes N more orders, and prints each
   replica's resident memory, the restart time of a backup that saw them all
   (SIGKILL to SERVING) and of the one that was down (start to caught up:
   from a snapshot once the log is compacted), and the replicas' file sizes.

--tree NAME=PATH (repeatable) runs the replicas of another checkout (its src
first on PYTHONPATH), in interleaved rounds (--rounds), side by side.

    .venv/bin/python bench/books_database_bench.py [--clients 50] [--seconds 10] [--kills 10]
        [--history 5000] [--tree base=/work/base --tree new=.] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "support"), str(ROOT / "tests" / "e2e")]

from books_database_harness import IDS, Replicas  # noqa: E402


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


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def load(replicas: Replicas, orders_n: int, clients: int, prefix: str) -> None:
    queue = iter(range(orders_n))

    async def client() -> None:
        for n in queue:
            txn = f"{prefix}-{n}"
            if (await replicas.db.reserve(txn, {"b001": 1, "b002": 1}, epoch=1)).ok:
                await replicas.db.commit(txn, epoch=1)

    await asyncio.gather(*(client() for _ in range(clients)))


async def history(replicas: Replicas, orders_n: int, clients: int) -> str:
    """N orders with one backup down; memory, restart times and file sizes after."""
    primary = await replicas.primary()
    down, up = (i for i in IDS if i != primary)
    replicas.kill(down)
    await load(replicas, orders_n, clients, "hist")
    await replicas.converged_among([primary, up])
    rss = {i: rss_mb(replicas.procs[i].pid) for i in (primary, up)}
    started = time.monotonic()
    replicas.spawn(down)
    await replicas.wait_serving(down)
    await replicas.converged()
    behind_s = time.monotonic() - started
    replicas.kill(up)
    started = time.monotonic()
    replicas.spawn(up)
    await replicas.wait_serving(up)
    restart_s = time.monotonic() - started
    await replicas.converged()
    status = await replicas.status(down)
    installed = status.snapshots_installed if status is not None else "?"
    files = sum(f.stat().st_size for f in (replicas.root / "data").glob("books-database-1.*"))
    return (
        f"after {orders_n} orders: RSS primary {rss[primary]:.1f} MB, backup {rss[up]:.1f} MB;"
        f" restart of a backup that saw them: {restart_s:.2f} s to SERVING;"
        f" of one that was down: {behind_s:.2f} s to caught up"
        f" (snapshots installed: {installed}); replica 1 files {files / 1e6:.1f} MB"
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


async def one_run(args: argparse.Namespace, tree: Path | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        replicas = Replicas(Path(tmp), initial_stock=10_000_000)
        if tree is not None:
            paths = [str(tree / "src"), os.environ.get("PYTHONPATH", "")]
            replicas.env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        try:
            await replicas.start()
            await replicas.primary()
            await orders(replicas, args.clients, args.seconds)
            if args.history:
                print(await history(replicas, args.history, args.history_clients))
            await failovers(replicas, args.kills)
        finally:
            await replicas.close()


def parse() -> tuple[argparse.Namespace, list[tuple[str, Path | None]]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--history", type=int, default=0, help="orders for memory/restart")
    parser.add_argument("--history-clients", type=int, default=20)
    parser.add_argument("--tree", action="append", default=[], help="NAME=PATH")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    trees: list[tuple[str, Path | None]] = [
        (n, Path(p).resolve()) for n, p in (t.split("=", 1) for t in args.tree)
    ]
    return args, trees or [("this tree", None)]


async def main(args: argparse.Namespace, trees: list[tuple[str, Path | None]]) -> None:
    for round_ in range(1, args.rounds + 1):
        for name, tree in trees:
            print(f"--- round {round_}, {name}; load average {os.getloadavg()[0]:.2f}", flush=True)
            await one_run(args, tree)


if __name__ == "__main__":
    asyncio.run(main(*parse()))
