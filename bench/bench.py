"""Checkout benchmark: throughput at 50 clients, latency at 10, resident memory.

    .venv/bin/python bench/bench.py                  # starts the system on free ports
    .venv/bin/python bench/bench.py --url http://127.0.0.1:8081   # a running system
    .venv/bin/python bench/bench.py --overload-concurrency 500     # and 500 clients at once

The overload phase (--overload-concurrency N, 0 skips it) sends N clients at once,
more than the orchestrator has slots for (ORCHESTRATOR_MAX_IN_FLIGHT): it reports the
admitted checkouts' rate and latency, and how many were refused with 503 BUSY and
how fast. A refused client does what the answer asks: it waits the
`Retry-After` seconds (times 1 to 1.5, so that refused clients do not come back in
step), then tries again. `--ignore-retry-after` makes it try again after 0.1 s
instead: clients that hammer the shop. Meanwhile a probe process, on one connection,
sends a checkout every 20 ms: what a customer arriving at the busy shop sees.

Load goes to 127.0.0.1 only and is bounded in count (--orders) and time
(--duration-cap per phase). Each client is one keep-alive HTTP/1.1 connection
driven by raw asyncio streams, so the load generator spends little CPU of the
two cores it shares with the services. Every order is the course page's
default request, approved end to end (checked, queued, executed). Prints a
markdown table.

Mutual TLS between the services is on unless the environment (or `--env
BOOKSTORE_TLS=off`) turns it off; the table's last row says which. The figures
before service identity come from the same script in a checkout of that code:

    .venv/bin/python bench/bench.py                              # mutual TLS
    .venv/bin/python bench/bench.py --env BOOKSTORE_TLS=off      # plaintext
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
sys.path.insert(0, str(ROOT / "tests" / "support"))

from checkout_requests import course_page_request  # noqa: E402
from harness import children, start_system  # noqa: E402

LOCAL_HOSTS = ("127.0.0.1", "localhost")


@dataclass
class Phase:
    concurrency: int
    latencies_s: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    busy_s: list[float] = field(default_factory=list)  # 503 BUSY answers: their latency
    elapsed_s: float = 0.0
    cpu_ms_per_order: float = 0.0  # CPU of every service per approved order (throughput)
    probe_busy_s: list[float] = field(default_factory=list)  # 503s seen by the probe process
    honours_retry_after: bool = True  # refused overload clients wait Retry-After

    @property
    def done(self) -> int:
        return len(self.latencies_s) + len(self.failures) + len(self.busy_s)

    @property
    def rate(self) -> float:
        return len(self.latencies_s) / self.elapsed_s if self.elapsed_s else 0.0

    def percentile(self, p: float, of: list[float] | None = None) -> float:
        """The p-th percentile in ms of the approved latencies (or of `of`)."""
        values = self.latencies_s if of is None else of
        if not values:
            return float("nan")
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


class Connection:
    """One keep-alive HTTP/1.1 connection posting checkouts."""

    def __init__(self, host: str, port: int, body: bytes) -> None:
        self.host, self.port = host, port
        self.request = (
            f"POST /checkout HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.retry_after_s = 0.0  # the last answer's Retry-After (0 without one)

    async def post(self) -> tuple[int, bytes]:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(self.request)
        status_line = await self.reader.readline()
        if not status_line:
            self.writer = None
            raise ConnectionError("connection closed")
        length, close = 0, False
        self.retry_after_s = 0.0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
            elif name == b"retry-after" and value.strip().isdigit():
                self.retry_after_s = float(value)
        payload = await self.reader.readexactly(length)
        if close:
            self.writer.close()
            self.writer = None
        return int(status_line.split()[1]), payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def run_phase(
    host: str,
    port: int,
    concurrency: int,
    orders: int,
    cap_s: float,
    body: bytes,
    honour_retry_after: bool = True,
) -> Phase:
    phase = Phase(concurrency)
    remaining = orders
    start = time.perf_counter()
    deadline = start + cap_s

    async def client() -> None:
        nonlocal remaining
        connection = Connection(host, port, body)
        try:
            while remaining > 0 and time.perf_counter() < deadline:
                remaining -= 1
                t0 = time.perf_counter()
                try:
                    status, payload = await connection.post()
                except (OSError, ConnectionError, asyncio.IncompleteReadError) as exc:
                    phase.failures.append(f"{type(exc).__name__}")
                    connection = Connection(host, port, body)
                    continue
                took = time.perf_counter() - t0
                answer: dict[str, Any] = orjson.loads(payload) if payload else {}
                if status == 200 and answer.get("status") == "Order Approved":
                    phase.latencies_s.append(took)
                elif status == 503 and answer.get("error", {}).get("code") == "BUSY":
                    phase.busy_s.append(took)
                    remaining += 1  # refused, not done: the client tries again
                    wait = connection.retry_after_s if honour_retry_after else 0.0
                    await asyncio.sleep(wait * random.uniform(1.0, 1.5) if wait else 0.1)
                else:
                    phase.failures.append(f"{status} {answer.get('status') or answer}")
        finally:
            connection.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    phase.elapsed_s = time.perf_counter() - start
    return phase


async def metric(host: str, port: int, name: str) -> float | None:
    """One unlabelled sample of the orchestrator's /metrics, or None without it."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        text = (await reader.read()).decode(errors="replace")
    finally:
        writer.close()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def _kib(pid: int, path: str, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/{path}").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory(pids: list[int]) -> tuple[float, float]:
    """(sum of RSS, sum of PSS) in MB over `pids`."""
    rss = sum(_kib(p, "status", "VmRSS:") for p in pids)
    pss = sum(_kib(p, "smaps_rollup", "Pss:") for p in pids)
    return rss / 1024, pss / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def with_children(names: dict[int, str]) -> dict[int, str]:
    """`names` and the processes they started."""
    found = dict(names)
    for pid, name in names.items():
        for child in children(pid):
            comm = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            found.setdefault(child, f"{name}-child-{comm[0].decode(errors='replace')}")
    return found


def cluster_pids(base_url: str) -> dict[int, str]:
    """pid -> service name, as the running system reports them."""
    import httpx

    cluster = httpx.get(base_url + "/api/cluster", timeout=5).json()
    pids = {
        s["pid"]: s["name"] if s.get("replicaId") is None else f"{s['name']}-{s['replicaId']}"
        for s in cluster["services"]
        if isinstance(s.get("pid"), int)
    }
    for replica in (cluster.get("database") or {}).get("replicas") or []:
        if isinstance(replica.get("pid"), int):
            pids[replica["pid"]] = f"books-database-{replica['replicaId']}"
    payment = cluster.get("payment") or {}
    if isinstance(payment.get("pid"), int):
        pids[payment["pid"]] = "payment"
    return pids


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _count_and_percentiles(phase: Phase, values: list[float]) -> str:
    p50, p90, p99 = (phase.percentile(p, values) for p in (50, 90, 99))
    return f"{len(values)}, {p50:.1f} / {p90:.1f} / {p99:.1f} ms"


def overload_rows(phase: Phase) -> list[tuple[str, str]]:
    """The overload phase's rows: admitted checkouts and the 503 BUSY refusals."""
    n = phase.concurrency
    return [
        (f"admitted checkouts/s at {n} concurrent clients", f"{phase.rate:.0f}"),
        (
            f"admitted latency p50 / p95 / p99 at {n} concurrent clients",
            f"{phase.percentile(50):.1f} / {phase.percentile(95):.1f} / "
            f"{phase.percentile(99):.1f} ms",
        ),
        (
            f"503 BUSY answers at {n} clients: count, p50 / p90 / p99",
            _count_and_percentiles(phase, phase.busy_s),
        ),
        (
            "503 BUSY answers to a separate one-connection probe process meanwhile: "
            "count, p50 / p90 / p99",
            _count_and_percentiles(phase, phase.probe_busy_s),
        ),
        (
            "refused clients try again",
            "after Retry-After (x 1-1.5)" if phase.honours_retry_after else "after 0.1 s",
        ),
    ]


async def probe(host: str, port: int, seconds: float, body: bytes) -> dict[str, list[float]]:
    """One client on one connection, a checkout every 20 ms for `seconds`: what a
    customer arriving at a busy shop sees, measured outside the overload's own event
    loop (500 clients in one process also measure that process's queueing)."""
    connection = Connection(host, port, body)
    seen: dict[str, list[float]] = {"busy": [], "approved": []}
    deadline = time.perf_counter() + seconds
    try:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            status, _ = await connection.post()
            took = time.perf_counter() - t0
            if status == 503:
                seen["busy"].append(took)
            elif status == 200:
                seen["approved"].append(took)
            await asyncio.sleep(0.02)
    finally:
        connection.close()
    return seen


async def probe_process(host: str, port: int, seconds: float) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--probe",
        f"http://{host}:{port}",
        "--probe-seconds",
        str(seconds),
        stdout=asyncio.subprocess.PIPE,
    )


def table(
    phases: tuple[Phase, Phase, Phase],
    rss_mb: float,
    pss_mb: float,
    procs: int,
    tls: str,
    overload: Phase | None = None,
) -> str:
    throughput, latency, single = phases
    rows = [
        (f"checkouts/s at {throughput.concurrency} concurrent clients", f"{throughput.rate:.0f}"),
        (
            f"latency p50 / p95 / p99 at {throughput.concurrency} concurrent clients",
            f"{throughput.percentile(50):.1f} / {throughput.percentile(95):.1f} / "
            f"{throughput.percentile(99):.1f} ms",
        ),
        (
            f"latency p50 / p95 / p99 at {latency.concurrency} concurrent clients",
            f"{latency.percentile(50):.1f} / {latency.percentile(95):.1f} / "
            f"{latency.percentile(99):.1f} ms",
        ),
        (
            f"checkouts/s at {latency.concurrency} concurrent clients",
            f"{latency.rate:.0f}",
        ),
        (
            "one checkout alone (1 client): p50 / p99",
            f"{single.percentile(50):.1f} / {single.percentile(99):.1f} ms",
        ),
        (
            f"CPU time per approved checkout, {procs} processes (at {throughput.concurrency})",
            f"{throughput.cpu_ms_per_order:.1f} ms",
        ),
        (f"resident memory, {procs} processes (sum of RSS)", f"{rss_mb:.0f} MB"),
        (f"proportional set size, {procs} processes (sum of PSS)", f"{pss_mb:.0f} MB"),
        (
            "orders (approved / failed)",
            f"{sum(len(p.latencies_s) for p in phases)} / {sum(len(p.failures) for p in phases)}",
        ),
        ("mutual TLS between the services (BOOKSTORE_TLS)", tls),
    ]
    if overload is not None:
        rows[5:5] = overload_rows(overload)
    lines = ["| measure | value |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows)]
    lines.append("")
    lines.append(
        f"Machine: {_cpu()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; load generator on the same machine."
    )
    return "\n".join(lines)


async def overload_phase(
    host: str, port: int, args: argparse.Namespace, body: bytes, stack: contextlib.AsyncExitStack
) -> Phase:
    probe_s = min(20.0, args.duration_cap)
    prober = await probe_process(host, port, probe_s)
    overload = await run_phase(
        host,
        port,
        args.overload_concurrency,
        args.overload_orders,
        args.duration_cap,
        body,
        honour_retry_after=not args.ignore_retry_after,
    )
    overload.honours_retry_after = not args.ignore_retry_after
    probed, _ = await prober.communicate()
    overload.probe_busy_s = orjson.loads(probed or b"{}").get("busy", [])
    print(f"overload phase: {overload.done} answers in {overload.elapsed_s:.1f} s", file=sys.stderr)
    return overload


async def bench(
    base_url: str, args: argparse.Namespace, names: dict[int, str]
) -> tuple[tuple[Phase, Phase, Phase], Phase | None]:
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    body = orjson.dumps(course_page_request())
    names.update(with_children(names))
    warm = await run_phase(host, port, 10, args.warmup, args.duration_cap, body)
    print(f"warm-up: {warm.done} orders, {len(warm.failures)} failed", file=sys.stderr)
    before = {pid: cpu_seconds(pid) for pid in names}
    bench_before = time.process_time()
    throughput = await run_phase(host, port, args.concurrency, args.orders, args.duration_cap, body)
    used = {pid: cpu_seconds(pid) - before[pid] for pid in names}
    used_bench = time.process_time() - bench_before
    per_order = max(1, len(throughput.latencies_s))
    print("CPU per approved order in the throughput phase:", file=sys.stderr)
    for pid, seconds in sorted(used.items(), key=lambda kv: -kv[1]):
        print(f"  {names[pid]:26} {seconds / per_order * 1000:6.2f} ms", file=sys.stderr)
    print(f"  {'(load generator)':26} {used_bench / per_order * 1000:6.2f} ms", file=sys.stderr)
    throughput.cpu_ms_per_order = sum(used.values()) / per_order * 1000
    print(
        f"throughput phase: {throughput.done} orders in {throughput.elapsed_s:.1f} s",
        file=sys.stderr,
    )
    latency = await run_phase(
        host, port, args.latency_concurrency, args.latency_orders, args.duration_cap, body
    )
    print(f"latency phase: {latency.done} orders in {latency.elapsed_s:.1f} s", file=sys.stderr)
    single = await run_phase(host, port, 1, args.single_orders, args.duration_cap, body)
    overload = None
    if args.overload_concurrency > 0:
        async with contextlib.AsyncExitStack() as stack:
            overload = await overload_phase(host, port, args, body, stack)
    for phase in (throughput, latency, single, *([overload] if overload else [])):
        if phase.failures:
            print(
                f"failures ({len(phase.failures)}): {sorted(set(phase.failures))[:5]}",
                file=sys.stderr,
            )
    return (throughput, latency, single), overload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running orchestrator on 127.0.0.1 (default: start one)")
    parser.add_argument("--orders", type=int, default=3000, help="orders in the throughput phase")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--latency-orders", type=int, default=1500)
    parser.add_argument("--latency-concurrency", type=int, default=10)
    parser.add_argument("--single-orders", type=int, default=200, help="orders from one client")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument(
        "--overload-concurrency", type=int, default=0, help="clients of the overload phase"
    )
    parser.add_argument("--overload-orders", type=int, default=5000)
    parser.add_argument(
        "--ignore-retry-after",
        action="store_true",
        help="refused overload clients try again after 0.1 s, not after Retry-After",
    )
    parser.add_argument(
        "--duration-cap", type=float, default=60.0, help="seconds per phase, at most"
    )
    parser.add_argument(
        "--env", action="append", default=[], help="NAME=VALUE for a started system"
    )
    parser.add_argument("--probe", help=argparse.SUPPRESS)  # the overload's probe process
    parser.add_argument("--probe-seconds", type=float, default=10.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        parts = urlsplit(args.probe)
        body = orjson.dumps(course_page_request())
        seen = asyncio.run(
            probe(parts.hostname or "127.0.0.1", parts.port or 80, args.probe_seconds, body)
        )
        sys.stdout.buffer.write(orjson.dumps(seen))
        return 0
    extra = dict(item.split("=", 1) for item in args.env)
    tls = extra.get("BOOKSTORE_TLS", os.environ.get("BOOKSTORE_TLS", "")) or "on (default)"
    with ExitStack() as stack:
        if args.url:
            base_url = args.url.rstrip("/")
            if urlsplit(base_url).hostname not in LOCAL_HOSTS:
                parser.error("--url must point at 127.0.0.1 or localhost")
            names = cluster_pids(base_url)
        else:
            extra.setdefault("BOOKSTORE_LOG_LEVEL", "WARNING")
            # Enough copies of every book that no order of the run is out of stock.
            extra.setdefault("BOOKS_INITIAL_STOCK", "1000000")
            system = stack.enter_context(start_system(extra))
            base_url = system.base_url
            names = {pid: name for name, pid in system.pids().items()}
            names[system.process.pid] = "launcher"
        phases, overload = asyncio.run(bench(base_url, args, names))
        rss, pss = memory(list(names))
        print("resident memory by process:", file=sys.stderr)
        for pid, name in sorted(names.items(), key=lambda kv: kv[1]):
            print(f"  {name:26} {_kib(pid, 'status', 'VmRSS:') / 1024:6.0f} MB", file=sys.stderr)
    tls_state = tls if not args.url else "as the running system"
    print(table(phases, rss, pss, len(names), tls_state, overload))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
