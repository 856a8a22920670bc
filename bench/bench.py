"""Checkout benchmark: every figure of the lean path, side by side for source trees.

    .venv/bin/python bench/bench.py                  # this checkout, on free ports
    .venv/bin/python bench/bench.py --tree before=/tmp/before --tree now=. --rounds 2
    .venv/bin/python bench/bench.py --tree now=. --soak 10   # and 10 minutes at 20 clients
    .venv/bin/python bench/bench.py --url http://127.0.0.1:8081   # a running system
    .venv/bin/python bench/bench.py --overload-concurrency 500     # and 500 clients at once

Each run starts a fresh system, waits until it has settled (every service healthy, the
highest executor leading) and `--settle` seconds more, then measures in turn:

- the idle system: CPU of all its processes (percent of one core) over `--idle`
  seconds with nothing to do; per process on stderr;
- a warm-up (`--warmup` orders at 10 clients);
- throughput: `--concurrency` (50) closed-loop clients, executed checkouts/s and the
  CPU of every process per executed order (per process on stderr); then the resident
  memory of all processes (sum of RSS, and of PSS);
- latency: `--latency-concurrency` (10) clients, executed/s and p50 / p99;
- one client alone: p50 / p99;
- the overload phase (`--overload-concurrency N`, 0 skips it);
- the soak (`--soak MINUTES`, 0 skips it): 20 closed-loop clients (`--soak-clients`)
  for that long, the total RSS and executed/s minute by minute.

The load average (1 / 5 / 15 min) closes each run's column.

Tracing (`--tracing off,sampled,all`; default off): each tree runs once per choice,
`sampled` and `all` exporting over OTLP to a local sink (bench/otlp_sink.py), `sampled`
with the parent-based 10% ratio sampler (OTEL_TRACES_SAMPLER=parentbased_traceidratio,
OTEL_TRACES_SAMPLER_ARG=0.1), `all` every span (parentbased_always_on).

A tree (`--tree NAME=PATH[:VAR=VALUE...]`, as in bench/goodput.py) is a source tree
whose `src` goes first on the PYTHONPATH of the system's processes, with environment
variables of its own. Each tree runs in turn, round after round (`--rounds`), so the
machine's noise hits every tree alike; one markdown table comes out, a column per tree
and round. Without `--tree` the tree is this checkout. Every system runs the shipped
defaults (adaptive admission on), AI off, with enough stock that no order runs out.

The overload phase sends N clients at once, more than the orchestrator has slots for
(ORCHESTRATOR_MAX_IN_FLIGHT): it reports the admitted checkouts' rate and latency, and
how many were refused with 503 BUSY and how fast. A refused client does what the answer
asks: it waits the `Retry-After` seconds (times 1 to 1.5, so that refused clients do not
come back in step), then tries again. `--ignore-retry-after` makes it try again after
0.1 s instead: clients that hammer the shop. Meanwhile a probe process, on one
connection, sends a checkout every 20 ms: what a customer arriving at the busy shop sees.

Load goes to 127.0.0.1 only and is bounded in count (--orders) and time
(--duration-cap per phase). Each client is one keep-alive HTTP/1.1 connection
driven by raw asyncio streams, so the load generator spends little CPU of the
two cores it shares with the services. Every order is the course page's
default request, approved end to end (checked, queued, executed). An order counts
as executed when its answer says so (`execution.state`); an answer without an
execution part (an older tree's) counts as executed when approved.

Mutual TLS between the services is on unless the environment (or `--env
BOOKSTORE_TLS=off`) turns it off; the table's last rows say which.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
sys.path.insert(0, str(ROOT / "tests" / "support"))

from checkout_requests import course_page_request  # noqa: E402
from goodput import BASE_ENV, Tree, check_tree, parse_env, parse_tree  # noqa: E402
from harness import children, start_system  # noqa: E402
from ports import free_ports  # noqa: E402

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
    executed: int = 0  # approved answers that say the order was executed

    @property
    def done(self) -> int:
        return len(self.latencies_s) + len(self.failures) + len(self.busy_s)

    @property
    def rate(self) -> float:
        return len(self.latencies_s) / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def executed_rate(self) -> float:
        return self.executed / self.elapsed_s if self.elapsed_s else 0.0

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


def executed(answer: dict[str, Any]) -> bool:
    """Whether an approved answer says its order was executed (an answer without an
    execution part, from a tree before it had one, was given after the execution)."""
    execution = answer.get("execution")
    return not isinstance(execution, dict) or execution.get("state") == "executed"


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
                    phase.executed += executed(answer)
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


Rows = dict[str, str]


def latency_rows(phases: tuple[Phase, Phase, Phase]) -> Rows:
    """The figures of the throughput, latency and one-client phases."""
    throughput, latency, single = phases
    n, m = throughput.concurrency, latency.concurrency
    return {
        "one client alone: p50 / p99": (
            f"{single.percentile(50):.1f} / {single.percentile(99):.1f} ms"
        ),
        f"{m} clients: executed/s, p50 / p99": (
            f"{latency.executed_rate:.1f}/s, "
            f"{latency.percentile(50):.0f} / {latency.percentile(99):.0f} ms"
        ),
        f"{n} clients: executed/s": f"{throughput.executed_rate:.1f}",
        f"{n} clients: p50 / p95 / p99": (
            f"{throughput.percentile(50):.0f} / {throughput.percentile(95):.0f} / "
            f"{throughput.percentile(99):.0f} ms"
        ),
        f"CPU per executed checkout at {n} clients, all processes": (
            f"{throughput.cpu_ms_per_order:.1f} ms"
        ),
    }


def table(columns: list[str], results: list[Rows]) -> str:
    """Rows: the figures, in the order first seen; a column per run."""
    labels: list[str] = []
    for rows in results:
        labels += [label for label in rows if label not in labels]
    lines = ["| measure | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for label in labels:
        lines.append(f"| {label} | " + " | ".join(rows.get(label, "") for rows in results) + " |")
    lines.append("")
    lines.append(
        f"Machine: {_cpu()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; load generator on the same machine."
    )
    return "\n".join(lines)


async def overload_phase(host: str, port: int, args: argparse.Namespace, body: bytes) -> Phase:
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
    log(f"overload phase: {overload.done} answers in {overload.elapsed_s:.1f} s")
    return overload


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def idle_cpu(names: dict[int, str], seconds: float) -> float:
    """CPU of `names` over `seconds` of nothing to do, in percent of one core (per
    process on stderr, the busiest first)."""
    before = {pid: cpu_seconds(pid) for pid in names}
    t0 = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    used = {pid: (cpu_seconds(pid) - before[pid]) / elapsed * 100 for pid in names}
    log(f"idle system, CPU over {elapsed:.0f} s (percent of one core):")
    for pid, percent in sorted(used.items(), key=lambda kv: -kv[1]):
        print(f"  {names[pid]:26} {percent:6.2f} %", file=sys.stderr)
    return sum(used.values())


def throughput_cpu(names: dict[int, str], before: dict[int, float], phase: Phase) -> None:
    """Sets the phase's CPU per executed order from the processes' CPU since `before`."""
    used = {pid: cpu_seconds(pid) - before.get(pid, 0.0) for pid in names}
    per_order = max(1, phase.executed)
    log("CPU per executed order in the throughput phase:")
    for pid, seconds in sorted(used.items(), key=lambda kv: -kv[1]):
        print(f"  {names[pid]:26} {seconds / per_order * 1000:6.2f} ms", file=sys.stderr)
    phase.cpu_ms_per_order = sum(used.values()) / per_order * 1000


async def bench(
    base_url: str, args: argparse.Namespace, names: dict[int, str]
) -> tuple[tuple[Phase, Phase, Phase], Phase | None, Rows]:
    """The load phases; the memory rows are taken right after the throughput phase."""
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    body = orjson.dumps(course_page_request())
    warm = await run_phase(host, port, 10, args.warmup, args.duration_cap, body)
    log(f"warm-up: {warm.done} orders, {len(warm.failures)} failed")
    before = {pid: cpu_seconds(pid) for pid in names}
    throughput = await run_phase(host, port, args.concurrency, args.orders, args.duration_cap, body)
    throughput_cpu(names, before, throughput)
    log(f"throughput phase: {throughput.done} orders in {throughput.elapsed_s:.1f} s")
    rows = memory_rows(names, f"after the {args.concurrency}-client phase")
    latency = await run_phase(
        host, port, args.latency_concurrency, args.latency_orders, args.duration_cap, body
    )
    log(f"latency phase: {latency.done} orders in {latency.elapsed_s:.1f} s")
    single = await run_phase(host, port, 1, args.single_orders, args.duration_cap, body)
    overload = None
    if args.overload_concurrency > 0:
        overload = await overload_phase(host, port, args, body)
    for phase in (throughput, latency, single, *([overload] if overload else [])):
        if phase.failures:
            log(f"failures ({len(phase.failures)}): {sorted(set(phase.failures))[:5]}")
    return (throughput, latency, single), overload, rows


def memory_rows(names: dict[int, str], when: str) -> Rows:
    rss, pss = memory(list(names))
    log(f"resident memory by process, {when}:")
    for pid, name in sorted(names.items(), key=lambda kv: kv[1]):
        print(f"  {name:26} {_kib(pid, 'status', 'VmRSS:') / 1024:6.0f} MB", file=sys.stderr)
    return {
        f"resident memory {when}, {len(names)} processes: sum of RSS / PSS": (
            f"{rss:.0f} / {pss:.0f} MB"
        )
    }


async def soak(base_url: str, args: argparse.Namespace, names: dict[int, str]) -> Rows:
    """`--soak-clients` closed-loop clients for `--soak` minutes: the total RSS and the
    executed/s at the end of each minute."""
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    body = orjson.dumps(course_page_request())
    rss: list[str] = [f"{memory(list(names))[0]:.0f}"]
    rates: list[str] = []
    for minute in range(int(args.soak)):
        phase = await run_phase(host, port, args.soak_clients, 10**9, 60.0, body)
        rss.append(f"{memory(list(names))[0]:.0f}")
        rates.append(f"{phase.executed_rate:.0f}")
        log(f"soak minute {minute + 1}: {rates[-1]} executed/s, RSS {rss[-1]} MB")
        if phase.failures:
            log(f"  failures ({len(phase.failures)}): {sorted(set(phase.failures))[:5]}")
    n = f"soak, {args.soak_clients} clients, {int(args.soak)} min"
    return {
        f"{n}: sum of RSS at the start, then minute by minute (MB)": ", ".join(rss),
        f"{n}: executed/s minute by minute": ", ".join(rates),
    }


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f} / {five:.1f} / {fifteen:.1f}"


def run_system(
    base_url: str, args: argparse.Namespace, names: dict[int, str], settle: Any = None
) -> Rows:
    """Every phase on one system; `settle` (if given) waits for its resting state."""
    names.update(with_children(names))
    rows: Rows = {"load average 1 / 5 / 15 min, at the start": load_average()}
    if args.idle > 0:
        if settle is not None:
            settle()
        time.sleep(args.settle)
        percent = idle_cpu(names, args.idle)
        rows[f"idle system: CPU of {len(names)} processes over {args.idle:g} s"] = (
            f"{percent:.1f} % of one core"
        )
    phases, overload, memory_row = asyncio.run(bench(base_url, args, names))
    rows.update(latency_rows(phases))
    if overload is not None:
        rows.update(dict(overload_rows(overload)))
    rows.update(memory_row)
    if args.soak > 0:
        rows.update(asyncio.run(soak(base_url, args, names)))
    rows["orders (approved / failed)"] = (
        f"{sum(len(p.latencies_s) for p in phases)} / {sum(len(p.failures) for p in phases)}"
    )
    rows["load average 1 / 5 / 15 min, at the end"] = load_average()
    return rows


TRACING = ("off", "sampled", "all")


def tracing_env(choice: str, sink: str) -> dict[str, str]:
    """The variables of a tracing choice (TRACING), spans going to `sink`."""
    if choice == "off":
        return {}
    sampler = {
        "sampled": {
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.1",
        },
        "all": {"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
    }[choice]
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": sink, "OTEL_EXPORTER_OTLP_INSECURE": "true", **sampler}


@contextlib.contextmanager
def otlp_sink(needed: bool) -> Iterator[str]:
    """A local OTLP sink's endpoint for the run ("" when no choice traces)."""
    if not needed:
        yield ""
        return
    (port,) = free_ports(1)
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "otlp_sink.py"), "--port", str(port)]
    )
    try:
        time.sleep(1.0)  # the sink binds at once; give its interpreter a moment to start
        if process.poll() is not None:
            raise SystemExit("the OTLP sink did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def run_tree(tree: Tree, args: argparse.Namespace, tracing: dict[str, str]) -> Rows:
    """A fresh system of `tree`, measured, stopped."""
    env = {**tree.system_env(args.env), **tracing}
    with start_system(env) as system:
        names = {pid: name for name, pid in system.pids().items()}
        names[system.process.pid] = "launcher"
        rows = run_system(system.base_url, args, names, system.wait_settled)
        restarted = [n for n, pid in system.pids().items() if names.get(pid) != n]
        if restarted:
            log(f"restarted by the launcher meanwhile: {', '.join(sorted(restarted))}")
    tls = env.get("BOOKSTORE_TLS", "") or "on (default)"
    rows["mutual TLS between the services (BOOKSTORE_TLS)"] = tls
    rows["tracing (OTEL_TRACES_SAMPLER)"] = env.get("OTEL_TRACES_SAMPLER", "off")
    return rows


def _tracing_choices(text: str) -> list[str]:
    chosen = [v.strip() for v in text.split(",") if v.strip()]
    wrong = [v for v in chosen if v not in TRACING]
    if wrong or not chosen:
        raise argparse.ArgumentTypeError(f"{wrong or text!r}: choose from {','.join(TRACING)}")
    return chosen


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--url", help="a running orchestrator on 127.0.0.1 (default: start one)")
    p.add_argument(
        "--tree",
        action="append",
        type=parse_tree,
        default=[],
        metavar="NAME=PATH[:VAR=VALUE...]",
        help="a source tree to benchmark (repeatable; default: this checkout, as 'this')",
    )
    p.add_argument("--rounds", type=int, default=1, help="times each tree runs")
    p.add_argument(
        "--tracing",
        type=_tracing_choices,
        default=["off"],
        help="tracing choices, comma-separated, each a run of every tree: " + ",".join(TRACING),
    )
    p.add_argument("--orders", type=int, default=3000, help="orders in the throughput phase")
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--latency-orders", type=int, default=1500)
    p.add_argument("--latency-concurrency", type=int, default=10)
    p.add_argument("--single-orders", type=int, default=200, help="orders from one client")
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--settle", type=float, default=10.0, help="seconds at rest before --idle")
    p.add_argument("--idle", type=float, default=20.0, help="seconds the idle CPU is measured")
    p.add_argument("--soak", type=float, default=0.0, help="minutes of the soak (0: none)")
    p.add_argument("--soak-clients", type=int, default=20)
    p.add_argument(
        "--overload-concurrency", type=int, default=0, help="clients of the overload phase"
    )
    p.add_argument("--overload-orders", type=int, default=5000)
    p.add_argument(
        "--ignore-retry-after",
        action="store_true",
        help="refused overload clients try again after 0.1 s, not after Retry-After",
    )
    p.add_argument("--duration-cap", type=float, default=60.0, help="seconds per phase, at most")
    p.add_argument(
        "--env",
        type=parse_env,
        action="append",
        default=[],
        metavar="VAR=VALUE",
        help="for every tree's system",
    )
    p.add_argument("--probe", help=argparse.SUPPRESS)  # the overload's probe process
    p.add_argument("--probe-seconds", type=float, default=10.0, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.env = dict(args.env)
    if args.probe:
        parts = urlsplit(args.probe)
        body = orjson.dumps(course_page_request())
        seen = asyncio.run(
            probe(parts.hostname or "127.0.0.1", parts.port or 80, args.probe_seconds, body)
        )
        sys.stdout.buffer.write(orjson.dumps(seen))
        return 0
    if args.url:
        base_url = args.url.rstrip("/")
        if urlsplit(base_url).hostname not in LOCAL_HOSTS:
            raise SystemExit("--url must point at 127.0.0.1 or localhost")
        rows = run_system(base_url, args, cluster_pids(base_url))
        print(table(["the running system"], [rows]))
        return 0
    trees: list[Tree] = args.tree or [Tree("this", ROOT)]
    if len({t.name for t in trees}) != len(trees):
        raise SystemExit(f"tree names must differ: {[t.name for t in trees]}")
    for tree in trees:
        log(f"tree {tree.describe()}: bookstore from {check_tree(tree, args.env)}")
    columns, results = [], []
    with otlp_sink(args.tracing != ["off"]) as sink:
        for r in range(args.rounds):
            for tree in trees:
                for choice in args.tracing:
                    name = tree.name if len(args.tracing) == 1 else f"{tree.name}, tracing {choice}"
                    name = name if args.rounds == 1 else f"{name} #{r + 1}"
                    log(f"round {r + 1}, {name}")
                    columns.append(name)
                    results.append(run_tree(tree, args, tracing_env(choice, sink)))
    print(table(columns, results))
    print()
    print("Trees: " + "; ".join(t.describe() for t in trees) + ".")
    common = {**BASE_ENV, **args.env}
    print("Every system: " + " ".join(f"{k}={v}" for k, v in common.items()) + ", AI off.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
