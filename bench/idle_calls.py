"""What the idle system does: gRPC calls per second by service and method, and CPU.

    PYTHONPATH=src .venv/bin/python bench/idle_calls.py --seconds 20

Starts the system, lets it settle (the highest executor leading), then counts,
over `--seconds` with no checkout, the calls each service's server finished
(`bookstore_grpc_server_handled_total` on its metrics port) and the CPU every
process used. Run it from each tree (with that tree's PYTHONPATH) to compare.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
sys.path.insert(0, str(ROOT / "tests" / "support"))

from harness import System, start_system  # noqa: E402
from ports import METRICS_OFFSET  # noqa: E402

HANDLED = "bookstore_grpc_server_handled_total"


def _servers(system: System) -> dict[str, str]:
    """Service name -> its metrics URL, for every gRPC service."""
    env = system.env
    found = {
        name: env[f"{name.upper().replace('-', '_')}_ADDRESS"]
        for name in ("transaction-verification", "fraud-detection", "suggestions", "order-queue")
    }
    found["payment"] = env["PAYMENT_ADDRESS"]
    for variable, prefix in (
        ("ORDER_EXECUTOR_ADDRESSES", "order-executor"),
        ("BOOKS_DATABASE_ADDRESSES", "books-database"),
    ):
        for entry in env[variable].split(","):
            replica, _, address = entry.partition("=")
            found[f"{prefix}-{replica}"] = address
    urls = {}
    for name, address in found.items():
        host, _, port = address.rpartition(":")
        urls[name] = f"http://{host}:{int(port) + METRICS_OFFSET}/metrics"
    return urls


def _calls(urls: dict[str, str]) -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    for name, url in urls.items():
        for family in text_string_to_metric_families(httpx.get(url, timeout=10.0).text):
            for sample in family.samples:
                if sample.name == HANDLED:
                    method = sample.labels.get("method", "").rpartition("/")[2]
                    counts[(name, method)] += sample.value
    return counts


def _cpu(pids: dict[str, int]) -> Counter[str]:
    """CPU seconds (user + system) each process used so far, by name."""
    used: Counter[str] = Counter()
    for name, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return used


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    with start_system({"BOOKSTORE_LOG_LEVEL": "WARNING"}) as system:
        system.wait_settled()
        time.sleep(2.0)
        urls = _servers(system)
        pids = {**system.pids(), "launcher": system.process.pid}
        calls, cpu, started = _calls(urls), _cpu(pids), time.monotonic()
        time.sleep(args.seconds)
        calls = _calls(urls) - calls
        cpu.subtract(_cpu(pids))
        elapsed = time.monotonic() - started
    print(f"idle for {elapsed:.1f} s, load average {os.getloadavg()[0]:.1f}")
    print(f"CPU of every process: {-sum(cpu.values()) / elapsed * 100:.1f}% of one core")
    for name, seconds in sorted(cpu.items(), key=lambda kv: kv[1]):
        print(f"  {-seconds / elapsed * 100:6.2f} %  {name}")
    print(f"gRPC calls finished: {sum(calls.values()) / elapsed:.1f}/s")
    by_method: Counter[str] = Counter()
    for (name, method), n in calls.items():
        by_method[f"{name.rstrip('0123456789').rstrip('-')} {method}"] += n
    for key, n in by_method.most_common():
        print(f"  {n / elapsed:7.1f}/s  {key}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
