"""Benchmark of the checkout pipeline alone (no HTTP).

Starts the three checkout services as subprocesses (`bookstore serve ...`) on
free 127.0.0.1 ports, then drives `Pipeline.run` directly with N concurrent
clients for a bounded number of orders, and prints orders/s and latency
percentiles. Every process it starts is stopped on exit.

    .venv/bin/python bench/pipeline_bench.py [--orders 2000] [--concurrency 10 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from bookstore import health
from bookstore.orchestrator.models import CheckoutRequest
from bookstore.orchestrator.pipeline import Pipeline
from bookstore.settings import CHECKOUT_SERVICES, Settings

REQUEST = {
    "user": {"name": "John Doe", "contact": "john.doe@example.com"},
    "creditCard": {"number": "4111111111111111", "expirationDate": "12/99", "cvv": "123"},
    "items": [{"name": "Book A", "quantity": 1}, {"name": "Dune", "quantity": 2}],
    "billingAddress": {
        "street": "1 Main St",
        "city": "Springfield",
        "zip": "62701",
        "country": "USA",
    },
    "termsAccepted": True,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_services(data_dir: str) -> tuple[Settings, list[subprocess.Popen[bytes]]]:
    ports = {s: free_port() for s in CHECKOUT_SERVICES}
    env = {
        **os.environ,
        "TRANSACTION_VERIFICATION_ADDRESS": f"127.0.0.1:{ports['transaction-verification']}",
        "FRAUD_DETECTION_ADDRESS": f"127.0.0.1:{ports['fraud-detection']}",
        "SUGGESTIONS_ADDRESS": f"127.0.0.1:{ports['suggestions']}",
        "BOOKSTORE_DATA_DIR": data_dir,
        "BOOKSTORE_LOG_LEVEL": os.environ.get("BENCH_SERVICE_LOG_LEVEL", "INFO"),
        "GEMINI_API_KEY": "",
        "GOOGLE_API_KEY": "",
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bookstore", "serve", s],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for s in CHECKOUT_SERVICES
    ]
    settings = Settings(
        transaction_verification_address=env["TRANSACTION_VERIFICATION_ADDRESS"],
        fraud_detection_address=env["FRAUD_DETECTION_ADDRESS"],
        suggestions_address=env["SUGGESTIONS_ADDRESS"],
    )
    return settings, procs


async def wait_healthy(settings: Settings, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    for service in CHECKOUT_SERVICES:
        while not await health.grpc_serving(settings.checkout_address(service), 0.5):
            if time.monotonic() > deadline:
                raise SystemExit(f"{service} did not become healthy")
            await asyncio.sleep(0.1)


async def drive(pipeline: Pipeline, orders: int, concurrency: int) -> tuple[float, list[float]]:
    request = CheckoutRequest.model_validate(REQUEST)
    latencies: list[float] = []
    remaining = orders
    failures = 0

    async def client() -> None:
        nonlocal remaining, failures
        while remaining > 0:
            remaining -= 1
            t0 = time.perf_counter()
            outcome = await pipeline.run(str(uuid.uuid4()), request)
            latencies.append((time.perf_counter() - t0) * 1000.0)
            if not outcome.approved:
                failures += 1

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    if failures:
        print(f"  WARNING: {failures} orders not approved")
    return orders / elapsed, latencies


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def main(orders: int, levels: list[int]) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        settings, procs = start_services(data_dir)
        try:
            await wait_healthy(settings)
            pipeline = Pipeline(dataclasses.replace(settings, checkout_timeout_s=10.0))
            await pipeline.start()
            await drive(pipeline, 200, 10)  # warm-up
            print(f"{'clients':>8} {'orders':>7} {'orders/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
            pids = {"pipeline (this process)": os.getpid()}
            pids.update({s: p.pid for s, p in zip(CHECKOUT_SERVICES, procs, strict=True)})
            cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            for level in levels:
                rate, lat = await drive(pipeline, orders, level)
                print(
                    f"{level:>8} {orders:>7} {rate:>9.0f} "
                    f"{statistics.median(lat):>8.1f} {pct(lat, 99):>8.1f}"
                )
            total = orders * len(levels)
            print("CPU per order:")
            for name, pid in pids.items():
                per_order = (cpu_seconds(pid) - cpu_before[name]) / total * 1000
                print(f"  {name:<26} {per_order:.2f} ms")
            stats = await pipeline.stats()
            print("cached orders after the run:", {s.service: s.cached_orders for s in stats})
            await pipeline.close()
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[10, 50])
    args = parser.parse_args()
    asyncio.run(main(args.orders, args.concurrency))
