"""Goodput: the checkouts a shop serves, and refuses, under bursts, faults and floods.

    .venv/bin/python bench/goodput.py                        # this checkout, every scenario
    .venv/bin/python bench/goodput.py --tree before=/tmp/before --tree now=.
    .venv/bin/python bench/goodput.py --tree gate=/tmp/before \\
        --tree nogate=/tmp/before:ORCHESTRATOR_GATE=off --rounds 2 --only bursts,faults
    .venv/bin/python bench/goodput.py --tree a=. --tree b=/tmp/other --plan   # the order

The defaults take about three minutes a tree and round (most of it the 30 s steady
loads: `--duration`); the table goes to stdout, progress to stderr.

A tree is NAME=PATH[:VAR=VALUE...]: a source tree whose `src` goes first on the
PYTHONPATH of the system's processes (so `python -m bookstore` runs that code), with
environment variables of its own. Each scenario runs for each tree in turn, round after
round (`--rounds`), so that the machine's noise hits every tree alike; one markdown
table comes out, a column per tree and round. Every system is started fresh by
tests/e2e/harness.py on free loopback ports, as shipped (adaptive admission on, whatever
the tree's default), AI off, with enough stock that no order runs out, and every order
is the course page's. Clients never wait for Retry-After: each sends its next checkout
as soon as it has an answer, and a 503 is counted, not sent again.

Scenarios (`--only bursts,faults,steady,flood`):

- bursts: on a fresh idle shop (after `--warmup` checkouts one at a time), N checkouts
  at once, one connection each (all connected first, then all sent): approved / refused
  (503) / other. A fresh system for each burst size.
- faults: 8 closed-loop clients send 40 checkouts in all; after the first few answers
  the leader executor is SIGSTOPped for 6 s (or SIGKILLed, or the books database's
  primary is; the launcher restarts a killed one). Approved, executed (each approved
  order followed with GET /orders/{id} until executed, for at most `--follow-s`), refused.
  The leader and primary come from GET /api/cluster, their pids from the launcher's log.
- steady: 20, and 50 closed-loop clients for `--duration` s, a fresh system each:
  executed/s (approved answers already executed), 503s, approved latency p50 / p99.
- flood: on one system, 50 closed-loop clients for `--flood-duration` s, then 500
  clients for as long, each sending again as soon as it has an answer: 490 are wrk's
  connections (`wrk -t2 -c490`, text/plain, a Lua script counting statuses) and 10 are
  asyncio clients that time each answer. Executed/s of both phases from the order
  queue's `bookstore_executions_total` (read before and after each), the flood's 503s
  and socket errors from wrk, and the admitted checkouts' latency from the 10 asyncio
  clients' answers given while wrk ran (wrk's own mixes the 503s), and from the
  orchestrator's checkout-duration histogram too where it is labelled by outcome.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
sys.path.insert(0, str(ROOT / "tests" / "support"))

from checkout_requests import course_page_request  # noqa: E402
from harness import System, start_system  # noqa: E402

SCENARIOS = ("bursts", "faults", "steady", "flood")
FAULTS = {
    "stop": "leader executor SIGSTOP",
    "kill": "leader executor SIGKILL",
    "primary": "books-database primary SIGKILL",
}
# The shipped defaults, not the harness's test settings (a fixed admission limit).
BASE_ENV = {
    "BOOKSTORE_LOG_LEVEL": "WARNING",
    "BOOKS_INITIAL_STOCK": "1000000",
    "ORCHESTRATOR_ADMISSION_ADAPTIVE": "on",
}
QUEUE = "order-queue"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- trees -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tree:
    name: str
    path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def src(self) -> Path:
        return self.path / "src"

    def system_env(self, common: dict[str, str]) -> dict[str, str]:
        """The environment of this tree's system: the shipped defaults, `common`, the
        tree's own variables, and its `src` first on PYTHONPATH."""
        env = {**BASE_ENV, **common, **self.env}
        rest = env.get("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(self.src), rest) if p)
        return env

    def describe(self) -> str:
        commit = ""
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(
                ["git", "-C", str(self.path), "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            commit = done.stdout.strip()
        extra = " ".join(f"{k}={v}" for k, v in self.env.items())
        return (
            f"{self.name}: {self.path}"
            + (f" @ {commit}" if commit else "")
            + (f", {extra}" if extra else "")
        )


def parse_tree(spec: str) -> Tree:
    """NAME=PATH[:VAR=VALUE...] -> Tree."""
    name, sep, rest = spec.partition("=")
    if not sep or not name or not rest:
        raise argparse.ArgumentTypeError(f"{spec!r}: expected NAME=PATH[:VAR=VALUE...]")
    path, *assignments = rest.split(":")
    env: dict[str, str] = {}
    for item in assignments:
        var, sep, value = item.partition("=")
        if not sep or not var:
            raise argparse.ArgumentTypeError(f"{spec!r}: {item!r} is not VAR=VALUE")
        env[var] = value
    return Tree(name, Path(path).expanduser().resolve(), env)


def parse_env(item: str) -> tuple[str, str]:
    var, sep, value = item.partition("=")
    if not sep or not var:
        raise argparse.ArgumentTypeError(f"{item!r} is not VAR=VALUE")
    return var, value


def check_tree(tree: Tree, common: dict[str, str]) -> str:
    """Where `python -m bookstore` finds the package with this tree's environment; it
    must be the tree's own `src`."""
    done = subprocess.run(
        [sys.executable, "-c", "import bookstore; print(bookstore.__file__)"],
        capture_output=True,
        text=True,
        env={**os.environ, **tree.system_env(common)},
        timeout=60,
        check=False,
    )
    found = done.stdout.strip()
    if done.returncode != 0 or not Path(found).resolve().is_relative_to(tree.src):
        raise SystemExit(
            f"tree {tree.name}: bookstore imports from {found or done.stderr.strip()!r}, "
            f"not from {tree.src}"
        )
    return found


@contextlib.contextmanager
def started(tree: Tree, args: argparse.Namespace) -> Iterator[System]:
    """A fresh system of `tree`, warmed up; stopped afterwards."""
    t0 = time.monotonic()
    with start_system(tree.system_env(args.env)) as system:
        log(f"  {tree.name}: system up in {time.monotonic() - t0:.1f} s")
        asyncio.run(warm_up(system, args.warmup))
        first = system.pids()
        yield system
        restarted = sorted(name for name, pid in system.pids().items() if first.get(name) != pid)
        if restarted:
            log(f"  restarted by the launcher meanwhile: {', '.join(restarted)}")
        for line in system.log().splitlines():
            if "exited with" in line or "could not start" in line:
                log(f"  {line}")
        if args.show_log:
            lines = system.log().splitlines()
            log("  the launcher's log, last lines:\n" + "\n".join(lines[-args.show_log :]))


# ---- one client --------------------------------------------------------------------------


@dataclass
class Answer:
    status: int | None  # None: no answer (a socket error or a timeout)
    took_s: float
    body: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    at: float = field(default_factory=time.perf_counter)  # when it came

    @property
    def approved(self) -> bool:
        return self.status == 200 and self.body.get("status") == "Order Approved"

    @property
    def refused(self) -> bool:
        return self.status == 503

    @property
    def executed(self) -> bool:
        execution = self.body.get("execution") or {}
        return self.approved and execution.get("state") == "executed"

    @property
    def order_id(self) -> str | None:
        value = self.body.get("orderId")
        return value if isinstance(value, str) else None


class Connection:
    """One keep-alive HTTP/1.1 connection posting the course page's checkout."""

    def __init__(self, host: str, port: int, body: bytes, timeout_s: float) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.request = (
            f"POST /checkout HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def post(self) -> Answer:
        t0 = time.perf_counter()
        try:
            status, payload = await asyncio.wait_for(self._post(), self.timeout_s)
        except (OSError, ConnectionError, asyncio.IncompleteReadError, TimeoutError) as exc:
            self.close()
            return Answer(None, time.perf_counter() - t0, error=type(exc).__name__)
        took = time.perf_counter() - t0
        body: dict[str, Any] = {}
        with contextlib.suppress(orjson.JSONDecodeError):
            parsed = orjson.loads(payload) if payload else {}
            body = parsed if isinstance(parsed, dict) else {}
        return Answer(status, took, body)

    async def _post(self) -> tuple[int, bytes]:
        await self.connect()
        assert self.reader is not None and self.writer is not None
        self.writer.write(self.request)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("connection closed")
        length, close = 0, False
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
        payload = await self.reader.readexactly(length)
        if close:
            self.close()
        return int(status_line.split()[1]), payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def _host_port(system: System) -> tuple[str, int]:
    host, _, port = system.address("ORCHESTRATOR_ADDRESS").rpartition(":")
    return host, int(port)


def _body() -> bytes:
    return orjson.dumps(course_page_request())


async def warm_up(system: System, orders: int) -> None:
    host, port = _host_port(system)
    connection = Connection(host, port, _body(), 60.0)
    try:
        for _ in range(orders):
            answer = await connection.post()
            if not answer.approved:
                log(f"  warm-up answer {answer.status} {answer.error or answer.body}")
    finally:
        connection.close()


# ---- metrics -----------------------------------------------------------------------------


async def scrape(client: httpx.AsyncClient, url: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of a Prometheus text page: (name, labels, value)."""
    text = (await client.get(url, timeout=10.0)).text
    return [
        (s.name, dict(s.labels), float(s.value))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def total(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(
        v for n, ls, v in samples if n == name and all(ls.get(k) == x for k, x in labels.items())
    )


def has(samples: list[tuple[str, dict[str, str], float]], name: str) -> bool:
    return any(n == name for n, _, _ in samples)


async def metrics_urls(client: httpx.AsyncClient, system: System) -> dict[str, str]:
    """Where the orchestrator and the order queue serve their metrics."""
    urls = {"orchestrator": system.base_url + "/metrics"}
    with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, TypeError):
        cluster = (await client.get(system.base_url + "/api/cluster", timeout=10.0)).json()
        for service in cluster.get("services") or []:
            url = service.get("metrics")
            if service.get("name") == QUEUE and isinstance(url, str):
                urls[QUEUE] = url if "://" in url else f"http://{url}/metrics"
    return urls


@dataclass
class Counts:
    """The counters that tell goodput, read at one moment."""

    executions: float | None  # the queue's bookstore_executions_total (None: not served)
    approved: float  # the orchestrator's bookstore_checkouts_total{outcome="approved"}
    unavailable: float  # ... {outcome="unavailable"}
    approved_buckets: dict[float, float] | None  # checkout duration by outcome, if labelled
    epoch: float | None = None  # the queue's bookstore_leader_epoch (None: not served)
    lease_expiries: float | None = None  # the queue's bookstore_lease_expiries_total


async def counts(client: httpx.AsyncClient, urls: dict[str, str]) -> Counts:
    orchestrator = await scrape(client, urls["orchestrator"])
    executions = epoch = lease_expiries = None
    if QUEUE in urls:
        with contextlib.suppress(httpx.HTTPError):
            queue = await scrape(client, urls[QUEUE])
            if has(queue, "bookstore_executions_total"):
                executions = total(queue, "bookstore_executions_total")
            if has(queue, "bookstore_leader_epoch"):
                epoch = total(queue, "bookstore_leader_epoch")
            if has(queue, "bookstore_lease_expiries_total"):
                lease_expiries = total(queue, "bookstore_lease_expiries_total")
    buckets: dict[float, float] = {}
    for name, labels, value in orchestrator:
        if name == "bookstore_checkout_duration_seconds_bucket" and (
            labels.get("outcome") == "approved"
        ):
            buckets[float(labels["le"])] = value
    return Counts(
        executions,
        total(orchestrator, "bookstore_checkouts_total", outcome="approved"),
        total(orchestrator, "bookstore_checkouts_total", outcome="unavailable"),
        buckets or None,
        epoch,
        lease_expiries,
    )


def _delta(before: float | None, after: float | None) -> str:
    return "n/a" if before is None or after is None else f"{after - before:.0f}"


def over(
    before: dict[float, float], after: dict[float, float], bound: float
) -> tuple[float, float]:
    """Of the observations between two readings of a cumulative histogram: how many
    were above `bound` (one of its bucket bounds), and how many there were."""
    count = after.get(float("inf"), 0.0) - before.get(float("inf"), 0.0)
    within = after.get(bound, 0.0) - before.get(bound, 0.0)
    return count - within, count


def histogram_quantile(
    before: dict[float, float], after: dict[float, float], q: float
) -> float | None:
    """The upper bound of the bucket holding the q-quantile of the observations made
    between two readings of a cumulative histogram."""
    diff = sorted((le, after.get(le, 0.0) - before.get(le, 0.0)) for le in after)
    if not diff or diff[-1][1] <= 0:
        return None
    wanted = q * diff[-1][1]
    return next(le for le, count in diff if count >= wanted)


class LimitWatch:
    """The orchestrator's `bookstore_admission_limit`, every half second."""

    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        self.client, self.url = client, url
        self.seen: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                samples = await scrape(self.client, self.url)
                if has(samples, "bookstore_admission_limit"):
                    self.seen.append(total(samples, "bookstore_admission_limit"))
            await asyncio.sleep(0.5)

    def __enter__(self) -> LimitWatch:
        self._task = asyncio.create_task(self._run())
        return self

    def __exit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()

    def summary(self) -> str:
        if not self.seen:
            return "not reported"
        ordered = sorted(self.seen)
        return " / ".join(f"{v:.0f}" for v in (ordered[0], ordered[len(ordered) // 2], ordered[-1]))


LIMIT_ROW = "admission limit min / median / max (bookstore_admission_limit, every 0.5 s)"


# ---- figures -----------------------------------------------------------------------------


def percentile_ms(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


def tally(answers: list[Answer]) -> tuple[int, int, int]:
    """(approved, refused with 503, anything else)."""
    approved = sum(a.approved for a in answers)
    refused = sum(a.refused for a in answers)
    return approved, refused, len(answers) - approved - refused


def others(answers: list[Answer]) -> str:
    """The other answers' kinds, for the log."""
    kinds: dict[str, int] = {}
    for a in answers:
        if not a.approved and not a.refused:
            kind = a.error or f"{a.status} {a.body.get('status') or a.body.get('error')}"
            kinds[kind] = kinds.get(kind, 0) + 1
    return ", ".join(f"{k} x{n}" for k, n in kinds.items())


Rows = dict[str, str]


# ---- bursts ------------------------------------------------------------------------------


async def burst(system: System, size: int, timeout_s: float) -> list[Answer]:
    host, port = _host_port(system)
    body = _body()
    connections = [Connection(host, port, body, timeout_s) for _ in range(size)]
    try:
        connected = await asyncio.gather(
            *(c.connect() for c in connections), return_exceptions=True
        )
        failed = [type(r).__name__ for r in connected if isinstance(r, BaseException)]
        answers = [Answer(None, 0.0, error=f"connect {e}") for e in failed]
        ready = [c for c, r in zip(connections, connected, strict=True) if r is None]
        answers += await asyncio.gather(*(c.post() for c in ready))
        return answers
    finally:
        for c in connections:
            c.close()


def run_burst(tree: Tree, args: argparse.Namespace, size: int) -> Rows:
    with started(tree, args) as system:
        time.sleep(args.idle_s)
        answers = asyncio.run(burst(system, size, args.request_timeout))
    approved, refused, other = tally(answers)
    if other:
        log(f"  other answers: {others(answers)}")
    slowest = max((a.took_s for a in answers), default=0.0)
    return {
        f"burst of {size} at once: approved / refused (503) / other": (
            f"{approved} / {refused} / {other}"
        ),
        f"burst of {size} at once: slowest answer": f"{slowest:.2f} s",
    }


# ---- faults ------------------------------------------------------------------------------


async def _target(client: httpx.AsyncClient, system: System, fault: str) -> str:
    """The launcher's name of the process the fault hits: the leader executor or the
    books database's primary, as GET /api/cluster reports them (waiting for one)."""
    deadline = time.monotonic() + 30.0
    cluster: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            cluster = (await client.get(system.base_url + "/api/cluster", timeout=10.0)).json()
            if fault == "primary":
                primary = (cluster.get("database") or {}).get("primary") or {}
                if primary.get("replicaId") is not None:
                    return f"books-database-{primary['replicaId']}"
            else:
                leader = cluster.get("leader") or {}
                replica = leader.get("replicaId")
                if replica is None:
                    roles = cluster.get("executors") or []
                    replica = next(
                        (e["replicaId"] for e in roles if e.get("role") == "leader"), None
                    )
                if replica is not None:
                    return f"order-executor-{replica}"
        await asyncio.sleep(0.2)
    raise RuntimeError(f"no target for the fault {fault!r} in GET /api/cluster: {cluster}")


async def follow(
    client: httpx.AsyncClient, system: System, answers: list[Answer], wait_s: float
) -> int:
    """How many approved orders are executed within `wait_s` (GET /orders/{id})."""
    waiting = {a.order_id for a in answers if a.approved and not a.executed and a.order_id}
    executed = sum(a.executed for a in answers)
    deadline = time.monotonic() + wait_s
    while waiting and time.monotonic() < deadline:
        for order_id in sorted(waiting):
            with contextlib.suppress(httpx.HTTPError, ValueError):
                got = await client.get(f"{system.base_url}/orders/{order_id}", timeout=10.0)
                state = ((got.json() or {}).get("execution") or {}).get("state")
                if state == "executed":
                    waiting.discard(order_id)
                    executed += 1
        if waiting:
            await asyncio.sleep(0.5)
    return executed


async def fault_run(system: System, fault: str, args: argparse.Namespace) -> Rows:
    host, port = _host_port(system)
    body = _body()
    async with httpx.AsyncClient() as client:
        target = await _target(client, system, fault)
        pid = system.pid(target)
        log(f"  fault {fault}: {target} pid {pid}")
        answers: list[Answer] = []
        remaining = args.fault_orders
        fired = asyncio.Event()
        resumed: list[asyncio.Task[None]] = []
        stopped = False
        before_fault: list[str] = []  # when it fired; approved / refused answers by then

        async def resume_later() -> None:
            await asyncio.sleep(args.stop_s)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

        def fire() -> None:
            nonlocal stopped
            fired.set()
            if fault == "stop":
                os.kill(pid, signal.SIGSTOP)
                stopped = True
                resumed.append(asyncio.create_task(resume_later()))
            else:
                os.kill(pid, signal.SIGKILL)
            approved, refused, _ = tally(answers)
            before_fault.append(f"{time.monotonic() - t0:.2f} s, {approved} / {refused}")
            log(f"  fault {fault} fired after {len(answers)} answers")

        async def client_loop() -> None:
            nonlocal remaining
            connection = Connection(host, port, body, args.request_timeout)
            try:
                while remaining > 0:
                    remaining -= 1
                    answers.append(await connection.post())
                    if len(answers) >= args.fault_after and not fired.is_set():
                        fire()
            finally:
                connection.close()

        urls = await metrics_urls(client, system)
        try:
            with LimitWatch(client, urls["orchestrator"]) as watch:
                t0 = time.monotonic()
                await asyncio.gather(*(client_loop() for _ in range(args.fault_clients)))
                elapsed = time.monotonic() - t0
                for task in resumed:
                    await task  # the stop lasts its time even if the clients are done
        finally:
            if stopped:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        executed = await follow(client, system, answers, args.follow_s)
    approved, refused, other = tally(answers)
    if other:
        log(f"  other answers: {others(answers)}")
    label = FAULTS[fault] + (f" {args.stop_s:g} s" if fault == "stop" else "")
    n = f"{args.fault_clients} clients, {args.fault_orders} checkouts"
    slowest = max((a.took_s for a in answers), default=0.0)
    return {
        f"{label}, {n}: approved / executed / refused (503) / other": (
            f"{approved} / {executed} / {refused} / {other}"
        ),
        f"{label}: fired at, approved / refused by then": (
            before_fault[0] if before_fault else "never"
        ),
        f"{label}: all answered in / slowest answer": f"{elapsed:.1f} s / {slowest:.1f} s",
        f"{label}: {LIMIT_ROW}": watch.summary(),
    }


def run_fault(tree: Tree, args: argparse.Namespace, fault: str) -> Rows:
    with started(tree, args) as system:
        return asyncio.run(fault_run(system, fault, args))


# ---- closed-loop load --------------------------------------------------------------------


@dataclass
class Load:
    clients: int
    answers: list[Answer] = field(default_factory=list)
    elapsed_s: float = 0.0

    def executed(self) -> int:
        return sum(a.executed for a in self.answers)

    def latencies(self) -> list[float]:
        return [a.took_s for a in self.answers if a.approved]


async def closed_loop(
    host: str, port: int, clients: int, seconds: float, timeout_s: float, stop: asyncio.Event
) -> Load:
    """`clients` connections, each sending its next checkout as soon as it has an answer,
    for `seconds` (or until `stop`)."""
    load = Load(clients)
    body = _body()
    deadline = time.monotonic() + seconds

    async def client() -> None:
        connection = Connection(host, port, body, timeout_s)
        try:
            while time.monotonic() < deadline and not stop.is_set():
                answer = await connection.post()
                load.answers.append(answer)
                if answer.status is None:
                    await asyncio.sleep(0.05)  # no answer: do not spin on a dead socket
        finally:
            connection.close()

    t0 = time.monotonic()
    await asyncio.gather(*(client() for _ in range(clients)))
    load.elapsed_s = time.monotonic() - t0
    return load


async def steady_run(system: System, args: argparse.Namespace, clients: int) -> Rows:
    host, port = _host_port(system)
    async with httpx.AsyncClient() as client:
        urls = await metrics_urls(client, system)
        with LimitWatch(client, urls["orchestrator"]) as watch:
            load = await closed_loop(
                host, port, clients, args.duration, args.request_timeout, asyncio.Event()
            )
    approved, refused, other = tally(load.answers)
    if other:
        log(f"  other answers: {others(load.answers)}")
    lat = load.latencies()
    n = f"{clients} clients, {args.duration:g} s"
    return {
        f"steady {n}: executed/s (approved/s)": (
            f"{load.executed() / load.elapsed_s:.1f} ({approved / load.elapsed_s:.1f})"
        ),
        f"steady {n}: refused (503) / other": f"{refused} / {other}",
        f"steady {n}: approved latency p50 / p99": (
            f"{percentile_ms(lat, 50):.0f} / {percentile_ms(lat, 99):.0f} ms"
        ),
        f"steady {n}: {LIMIT_ROW}": watch.summary(),
    }


def run_steady(tree: Tree, args: argparse.Namespace, clients: int) -> Rows:
    with started(tree, args) as system:
        return asyncio.run(steady_run(system, args, clients))


# ---- flood -------------------------------------------------------------------------------

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "text/plain"
wrk.body = [==[BODY]==]

local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0; busy = 0; other = 0 end
function response(status, headers, body)
  if status == 200 then ok = ok + 1
  elseif status == 503 then busy = busy + 1
  else other = other + 1 end
end
function done(summary, latency, requests)
  local o, b, x = 0, 0, 0
  for _, t in ipairs(threads) do
    o = o + t:get("ok"); b = b + t:get("busy"); x = x + t:get("other")
  end
  local e = summary.errors
  io.write(string.format("GOODPUT %d %d %d %d %d %d %d %d %d\\n", o, b, x,
    summary.requests, e.connect, e.read, e.write, e.timeout, summary.duration))
end
"""


@dataclass
class Wrk:
    ok: int = 0
    busy: int = 0
    other: int = 0
    requests: int = 0
    connect: int = 0
    read: int = 0
    write: int = 0
    timeout: int = 0
    duration_s: float = 0.0
    output: str = ""

    @classmethod
    def parse(cls, output: str) -> Wrk:
        found = re.search(r"^GOODPUT((?: \d+){9})$", output, re.MULTILINE)
        if found is None:
            raise RuntimeError(f"no GOODPUT line in wrk's output:\n{output}")
        o, b, x, r, c, rd, w, t, d = (int(v) for v in found.group(1).split())
        return cls(o, b, x, r, c, rd, w, t, d / 1e6, output)


async def wrk(url: str, args: argparse.Namespace, script: Path) -> Wrk:
    command = [
        args.wrk,
        f"-t{args.flood_threads}",
        f"-c{args.flood_clients - args.sample_clients}",
        f"-d{args.flood_duration:g}s",
        f"--timeout={args.wrk_timeout}",
        "-s",
        str(script),
        url + "/checkout",
    ]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    return Wrk.parse(out.decode(errors="replace"))


def executed_between(before: Counts, after: Counts) -> float:
    """Orders executed between two readings: the queue's count, or else the
    orchestrator's approved checkouts."""
    if before.executions is None or after.executions is None:
        return after.approved - before.approved
    return after.executions - before.executions


async def flood_run(system: System, args: argparse.Namespace, script: Path) -> Rows:
    host, port = _host_port(system)
    async with httpx.AsyncClient() as client:
        urls = await metrics_urls(client, system)
        ref_clients = args.flood_reference_clients
        before, t0 = await counts(client, urls), time.monotonic()
        await closed_loop(
            host, port, ref_clients, args.flood_duration, args.request_timeout, asyncio.Event()
        )
        after, t1 = await counts(client, urls), time.monotonic()
        ref_rate = executed_between(before, after) / (t1 - t0)
        await asyncio.sleep(args.idle_s)

        stop = asyncio.Event()
        with LimitWatch(client, urls["orchestrator"]) as watch:
            before, t0 = await counts(client, urls), time.monotonic()
            sampler = asyncio.create_task(
                closed_loop(host, port, args.sample_clients, args.flood_duration * 2, 60.0, stop)
            )
            flood = await wrk(system.base_url, args, script)
            flood_end = time.perf_counter()
            # Until wrk is done: what the shop executes while the flood lasts (orders
            # still in flight when wrk leaves are not the flood's goodput).
            after, t1 = await counts(client, urls), time.monotonic()
            stop.set()
            sample = await sampler
    rate = executed_between(before, after) / (t1 - t0)
    source = (
        "queue's bookstore_executions_total"
        if after.executions is not None
        else "orchestrator's approved checkouts"
    )
    # The answers given while the flood lasted: once wrk leaves, the line drains and its
    # last waiters, with nobody newer behind them, are admitted after waiting up to the
    # deadline; that is the flood's end, not a checkout served during it.
    during = [a for a in sample.answers if a.at <= flood_end]
    lat = [a.took_s for a in during if a.approved]
    sample_refused = sum(a.refused for a in during)
    c, k, n = args.flood_clients, args.sample_clients, ref_clients
    rows = {
        f"flood, {c} clients ({c - k} wrk + {k} asyncio), {args.flood_duration:g} s: "
        f"executed/s ({source})": f"{rate:.1f}",
        f"flood: executed/s at {n} closed-loop clients, same system, just before": (
            f"{ref_rate:.1f}"
        ),
        f"flood: executed/s at {c} as % of at {n}": (
            f"{100 * rate / ref_rate:.0f}%" if ref_rate else "n/a"
        ),
        "flood (wrk): answers 200 / 503 / other": f"{flood.ok} / {flood.busy} / {flood.other}",
        f"flood (wrk): socket errors connect / read / write / timeout (> {args.wrk_timeout})": (
            f"{flood.connect} / {flood.read} / {flood.write} / {flood.timeout}"
        ),
        f"flood: admitted latency p50 / p99, from the {k} asyncio clients, answered "
        "while wrk ran (approved / 503 they got)": (
            f"{percentile_ms(lat, 50):.0f} / {percentile_ms(lat, 99):.0f} ms "
            f"({len(lat)} / {sample_refused})"
        ),
    }
    if before.approved_buckets is not None and after.approved_buckets is not None:
        p99 = histogram_quantile(before.approved_buckets, after.approved_buckets, 0.99)
        rows["flood: admitted p99, orchestrator's checkout-duration histogram (bucket bound)"] = (
            "n/a" if p99 is None else f"<= {p99 * 1000:.0f} ms"
        )
        slow, admitted = over(before.approved_buckets, after.approved_buckets, 2.0)
        rows["flood: admitted checkouts answered after more than 2 s, orchestrator's histogram"] = (
            f"{slow:.0f} of {admitted:.0f} ({100 * slow / admitted:.1f}%)"
            if admitted and 2.0 in after.approved_buckets
            else "n/a"
        )
    rows[f"flood: {LIMIT_ROW}"] = watch.summary()
    rows["flood: new leader epochs / leases expired, while wrk ran"] = (
        f"{_delta(before.epoch, after.epoch)} / "
        f"{_delta(before.lease_expiries, after.lease_expiries)}"
    )
    log(f"  flood: wrk {flood.requests} requests in {flood.duration_s:.1f} s")
    return rows


def run_flood(tree: Tree, args: argparse.Namespace) -> Rows:
    body = orjson.dumps(course_page_request()).decode()
    with tempfile.TemporaryDirectory() as private:
        script = Path(private) / "flood.lua"
        script.write_text(WRK_SCRIPT.replace("BODY", body))
        with started(tree, args) as system:
            return asyncio.run(flood_run(system, args, script))


# ---- the run -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """One part of a scenario, run for each tree in turn."""

    name: str
    run: Callable[[Tree, argparse.Namespace], Rows]


def units(args: argparse.Namespace) -> list[Unit]:
    chosen: list[Unit] = []
    if "bursts" in args.only:
        for size in args.bursts:
            chosen.append(Unit(f"burst {size}", lambda t, a, s=size: run_burst(t, a, s)))
    if "faults" in args.only:
        for fault in args.faults:
            chosen.append(Unit(f"fault {fault}", lambda t, a, f=fault: run_fault(t, a, f)))
    if "steady" in args.only:
        for clients in args.steady_clients:
            chosen.append(Unit(f"steady {clients}", lambda t, a, c=clients: run_steady(t, a, c)))
    if "flood" in args.only:
        chosen.append(Unit("flood", run_flood))
    return chosen


def table(trees: list[Tree], rounds: int, results: dict[tuple[str, int], Rows]) -> str:
    """Rows: the figures, in the order first seen; columns: each tree's rounds."""
    columns = [(t.name, r) for t in trees for r in range(rounds)]
    labels: list[str] = []
    for rows in results.values():
        labels += [label for label in rows if label not in labels]
    head = [name if rounds == 1 else f"{name} #{r + 1}" for name, r in columns]
    lines = [
        "| figure | " + " | ".join(head) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for label in labels:
        cells = [results.get(column, {}).get(label, "") for column in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cpu() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: expected numbers, comma-separated") from exc


def _choices(allowed: tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        chosen = [v.strip() for v in text.split(",") if v.strip()]
        wrong = [v for v in chosen if v not in allowed]
        if wrong:
            raise argparse.ArgumentTypeError(f"{wrong}: choose from {','.join(allowed)}")
        return chosen

    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--tree",
        action="append",
        type=parse_tree,
        default=[],
        metavar="NAME=PATH[:VAR=VALUE...]",
        help="a source tree to benchmark (repeatable; default: this checkout, as 'this')",
    )
    p.add_argument("--rounds", type=int, default=1, help="times each tree runs each scenario")
    p.add_argument(
        "--only",
        type=_choices(SCENARIOS),
        default=list(SCENARIOS),
        help="scenarios, comma-separated: " + ",".join(SCENARIOS),
    )
    p.add_argument(
        "--env",
        type=parse_env,
        action="append",
        default=[],
        metavar="VAR=VALUE",
        help="for every tree's system",
    )
    p.add_argument("--warmup", type=int, default=3, help="checkouts one at a time, first")
    p.add_argument("--idle-s", type=float, default=1.0, help="pause before a burst or flood")
    p.add_argument("--request-timeout", type=float, default=60.0, help="seconds per checkout")
    p.add_argument("--bursts", type=_ints, default=[15, 50, 200], help="burst sizes")
    p.add_argument(
        "--faults",
        type=_choices(tuple(FAULTS)),
        default=list(FAULTS),
        help="faults, comma-separated: " + ",".join(FAULTS),
    )
    p.add_argument("--fault-clients", type=int, default=8)
    p.add_argument("--fault-orders", type=int, default=40, help="checkouts in all, per fault")
    p.add_argument("--fault-after", type=int, default=3, help="answers before the fault")
    p.add_argument("--stop-s", type=float, default=6.0, help="how long SIGSTOP lasts")
    p.add_argument(
        "--follow-s", type=float, default=30.0, help="wait for approved orders' execution"
    )
    p.add_argument("--duration", type=float, default=30.0, help="seconds per steady load")
    p.add_argument("--steady-clients", type=_ints, default=[20, 50])
    p.add_argument(
        "--flood-clients", type=int, default=500, help="clients in all (wrk's and the sample)"
    )
    p.add_argument("--flood-threads", type=int, default=2, help="wrk threads")
    p.add_argument("--flood-duration", type=float, default=15.0, help="seconds, each phase")
    p.add_argument("--flood-reference-clients", type=int, default=50)
    p.add_argument(
        "--sample-clients",
        type=int,
        default=10,
        help="of the flood's clients, asyncio ones timing each answer (the rest are wrk's)",
    )
    p.add_argument(
        "--wrk-timeout", default="30s", help="wrk's --timeout (a slower answer: a timeout)"
    )
    p.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk")
    p.add_argument(
        "--show-log", type=int, default=0, help="print the launcher log's last N lines of each"
    )
    p.add_argument(
        "--plan",
        action="store_true",
        help="check the trees and print the runs in their order, start nothing",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.env = dict(args.env)
    trees: list[Tree] = args.tree or [Tree("this", ROOT)]
    names = [t.name for t in trees]
    if len(set(names)) != len(names):
        raise SystemExit(f"tree names must differ: {names}")
    if "flood" in args.only:
        if not Path(args.wrk).exists():
            raise SystemExit(f"no wrk at {args.wrk} (the flood needs it)")
        if not 0 <= args.sample_clients < args.flood_clients - args.flood_threads:
            raise SystemExit("--sample-clients: fewer than the flood's clients less wrk's threads")
    for tree in trees:
        log(f"tree {tree.describe()}: bookstore from {check_tree(tree, args.env)}")
    if args.plan:
        for unit in units(args):
            for r in range(args.rounds):
                for tree in trees:
                    print(f"{unit.name}, round {r + 1}, {tree.name}")
        return 0
    results: dict[tuple[str, int], Rows] = {}
    started_at = time.monotonic()
    for unit in units(args):
        for r in range(args.rounds):
            for tree in trees:
                log(f"{unit.name}, round {r + 1}, {tree.name}")
                try:
                    rows = unit.run(tree, args)
                except Exception as exc:
                    traceback.print_exc()
                    rows = {f"{unit.name}: error": f"{type(exc).__name__}: {exc}"[:120]}
                results.setdefault((tree.name, r), {}).update(rows)
    print(table(trees, args.rounds, results))
    print()
    print("Trees: " + "; ".join(t.describe() for t in trees) + ".")
    common = {**BASE_ENV, **args.env}
    print(
        "Every system: " + " ".join(f"{k}={v}" for k, v in common.items()) + ", AI off; "
        f"{args.warmup} checkouts one at a time first. Scenarios in turn for each tree, "
        f"{args.rounds} round(s), {time.monotonic() - started_at:.0f} s in all."
    )
    print(
        f"Machine: {_cpu()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; load generator and wrk on the same machine."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
