"""`bookstore up`: every service as its own process on this machine.

The launcher starts each service (`python -m bookstore serve NAME`), waits until
each gRPC service reports SERVING through standard health checking and the
orchestrator answers /healthz, prints where the shop is, and streams every
service's output line by line behind a coloured name prefix.

Like Compose's `restart: unless-stopped`, a service that exits is started again
after a back-off that doubles up to a cap and resets once the service has run a
while. A service that has never come up is given up instead when it stops on a
configuration error, or with the same error three times in a row
(`bookstore.restarts`): `bookstore up` then stops everything and prints the
service's last lines of output, without waiting out the readiness timeout.

On Ctrl-C or SIGTERM every service gets SIGTERM, then SIGKILL after a
grace period; each child runs in its own process group (a terminal's Ctrl-C
reaches only the launcher, which stops them in order) and, on Linux, is
killed by the kernel if the launcher itself dies (PR_SET_PDEATHSIG).

With chaos on (`bookstore up --chaos`) the launcher also serves the fault control
socket (`bookstore.chaos.control`): kill, pause and restart its services, and the
message-fault rules every service reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sys
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TextIO

from bookstore import health, readiness
from bookstore.backoff import Backoff
from bookstore.chaos.control import Control
from bookstore.parent_death import die_with_parent
from bookstore.restarts import UP_AFTER_S, Exit, GiveUp, RestartPolicy, describe_code
from bookstore.settings import Settings

READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 5.0
BACKOFF_FIRST_S = 0.5
BACKOFF_CAP_S = 10.0
BACKOFF_RESET_AFTER_S = 30.0  # a service up this long starts its back-off afresh
TAIL_LINES = 10  # a service's last lines of output kept, to show why it gave up
OUTPUT_DRAIN_S = 1.0  # after an exit, how long its last output may take to be read

_COLORS = ("36", "35", "33", "32", "34", "96", "95", "93", "92", "94")


class LaunchError(RuntimeError):
    """A service did not come up; the message names it (and says why, when known)."""


@dataclass(frozen=True)
class ServiceSpec:
    service: str  # the `bookstore serve` name
    replica_id: int | None
    address: str
    http: bool = False  # readiness via GET /healthz instead of gRPC health

    @property
    def name(self) -> str:
        return self.service if self.replica_id is None else f"{self.service}-{self.replica_id}"

    @property
    def target(self) -> readiness.Target:
        return readiness.Target(self.name, self.address, self.http)

    def argv(self, python: str) -> list[str]:
        args = [python, "-m", "bookstore", "serve", self.service]
        if self.replica_id is not None:
            args += ["--replica-id", str(self.replica_id)]
        return args


def services_of(settings: Settings) -> list[ServiceSpec]:
    """Every service of the system, in start order: the books database and payment
    before the executors (their 2PC participants), the orchestrator last."""
    specs = [
        ServiceSpec("books-database", rid, address)
        for rid, address in sorted(settings.books_database_addresses.items())
    ]
    specs += [
        ServiceSpec("transaction-verification", None, settings.transaction_verification_address),
        ServiceSpec("fraud-detection", None, settings.fraud_detection_address),
        ServiceSpec("suggestions", None, settings.suggestions_address),
        ServiceSpec("order-queue", None, settings.order_queue_address),
        ServiceSpec("payment", None, settings.payment_address),
    ]
    specs += [
        ServiceSpec("order-executor", rid, address)
        for rid, address in sorted(settings.order_executor_addresses.items())
    ]
    specs.append(ServiceSpec("orchestrator", None, settings.orchestrator_address, http=True))
    return specs


@dataclass
class _Running:
    spec: ServiceSpec
    color: str
    backoff: Backoff
    policy: RestartPolicy
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    restarts: int = 0
    supervisor: asyncio.Task[None] | None = None
    pids: list[int] = field(default_factory=list)
    # The current run's output reader and its last lines.
    reader: asyncio.Task[None] | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))


class Launcher:
    """Runs and supervises the services. Use from a running event loop:

    launcher = Launcher(settings)
    await launcher.start()
    await launcher.wait_ready()
    ...
    await launcher.stop()
    """

    def __init__(
        self,
        settings: Settings,
        *,
        color: bool = False,
        out: TextIO | None = None,
        python: str = sys.executable,
        env: Mapping[str, str] | None = None,
        specs: list[ServiceSpec] | None = None,
        backoff_first_s: float = BACKOFF_FIRST_S,
        backoff_cap_s: float = BACKOFF_CAP_S,
        backoff_reset_after_s: float = BACKOFF_RESET_AFTER_S,
        up_after_s: float = UP_AFTER_S,
        stop_grace_s: float = STOP_GRACE_S,
    ) -> None:
        self.settings = settings
        self.out = out if out is not None else sys.stdout
        self.color = color
        self.python = python
        self.env = dict(os.environ if env is None else env)
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        # One secret fingerprint key per run, shared by every service it starts.
        if not self.env.get("CARD_FINGERPRINT_KEY"):
            self.env["CARD_FINGERPRINT_KEY"] = secrets.token_hex(32)
        self.backoff_reset_after_s = backoff_reset_after_s
        self.stop_grace_s = stop_grace_s
        self._services = [
            # One supervisor per service: no herd to spread, so no jitter (the
            # restart messages say the exact delay).
            _Running(
                spec,
                _COLORS[i % len(_COLORS)],
                Backoff(backoff_first_s, backoff_cap_s, jitter=0),
                RestartPolicy(up_after_s=up_after_s),
            )
            for i, spec in enumerate(specs if specs is not None else services_of(settings))
        ]
        self._width = max(len(r.spec.name) for r in self._services)
        self._stopping = False
        # The first service given up on (see bookstore.restarts), and its signal.
        self.failure: LaunchError | None = None
        self._failed = asyncio.Event()
        self._readers: set[asyncio.Task[None]] = set()
        self.control: Control | None = None
        if settings.chaos:  # fault injection: the services filter their messages
            self.env["BOOKSTORE_CHAOS"] = "1"
            names = [r.spec.name for r in self._services]
            self.control = Control(settings.data_dir, names, self.pids, self.say)

    # ---------------------------------------------------------------- output

    def _prefix(self, name: str, color: str) -> str:
        label = name.ljust(max(self._width, len("launcher")))
        if self.color:
            return f"\x1b[{color}m{label} |\x1b[0m "
        return f"{label} | "

    def say(self, text: str) -> None:
        """A line of the launcher's own (several, if `text` has several)."""
        prefix = self._prefix("launcher", "1")
        for line in text.splitlines() or [""]:
            self._write(prefix, line)

    def _write(self, prefix: str, text: str) -> None:
        try:
            self.out.write(f"{prefix}{text}\n")
            self.out.flush()
        except (OSError, ValueError):
            pass  # nobody is reading our output any more; keep supervising

    async def _pump(
        self, running: _Running, stream: asyncio.StreamReader, tail: deque[str]
    ) -> None:
        prefix = self._prefix(running.spec.name, running.color)
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line longer than the stream limit
                line = await stream.read(65536)
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            tail.append(text)
            self._write(prefix, text)

    # ------------------------------------------------------------- processes

    async def _spawn(self, running: _Running) -> None:
        process = await asyncio.create_subprocess_exec(
            *running.spec.argv(self.python),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
            preexec_fn=die_with_parent,
            limit=1024 * 1024,
        )
        running.process = process
        running.started_at = time.monotonic()
        running.pids.append(process.pid)
        self.say(f"started {running.spec.name} pid={process.pid}")
        assert process.stdout is not None
        # Each run its own tail: a late line of the last run never lands in this one's.
        running.tail = deque(maxlen=TAIL_LINES)
        reader = asyncio.create_task(self._pump(running, process.stdout, running.tail))
        running.reader = reader
        self._readers.add(reader)
        reader.add_done_callback(self._readers.discard)

    async def _supervise(self, running: _Running) -> None:
        """Wait for the service to exit; start it again after a back-off unless stopping,
        or give up on it (`bookstore.restarts`)."""
        while True:
            process = running.process
            assert process is not None
            code = await process.wait()
            if self._stopping:
                return
            ran = time.monotonic() - running.started_at
            if running.reader is not None:
                # Its last lines (a traceback's end) may still be in the pipe: they are
                # what the decision and the message go by. A child of the service that
                # holds the pipe open must not hold up the decision.
                await asyncio.wait({running.reader}, timeout=OUTPUT_DRAIN_S)
            name, how = running.spec.name, describe_code(code)
            verdict = running.policy.exited(Exit(code, ran, tuple(running.tail)))
            if verdict is not None:
                self.say(f"{name} exited with {how} after {ran:.1f} s; not restarting it")
                self._give_up(running, verdict)
                return
            if ran >= self.backoff_reset_after_s:
                running.backoff.reset()
            delay = running.backoff.next()
            self.say(f"{name} exited with {how} after {ran:.1f} s; restarting in {delay:.1f} s")
            await asyncio.sleep(delay)
            if self._stopping:
                return
            try:
                await self._spawn(running)
            except OSError as exc:
                self.say(f"could not start {running.spec.name}: {exc}")
                return
            running.restarts += 1

    def _give_up(self, running: _Running, verdict: GiveUp) -> None:
        """Record the first service given up on; `wait_ready` raises its LaunchError."""
        if self.failure is not None:
            return
        if verdict.tail:
            lines = "\n".join(f"  {line}" for line in verdict.tail)
            said = f"; its last lines of output:\n{lines}"
        else:
            said = "; it printed nothing"
        self.failure = LaunchError(f"{running.spec.name} {verdict.reason}{said}")
        self._failed.set()

    async def start(self) -> None:
        """Start every service (without waiting for readiness)."""
        if self.control is not None:
            await self.control.start()
        for running in self._services:
            await self._spawn(running)
            running.supervisor = asyncio.create_task(self._supervise(running))

    async def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Until every service is healthy; LaunchError names those that never were, or
        at once the service given up on (`self.failure`) with its last lines.

        The health checks run in a short-lived probe process (`bookstore.readiness`).
        A service it reports ready has come up: from then on it is always restarted."""
        targets = [r.spec.target for r in self._services]
        checker = await readiness.spawn(targets, timeout, self.env)
        pending = {t.name for t in targets}
        reading = asyncio.create_task(self._read_ready(checker, pending))
        failed = asyncio.create_task(self._failed.wait())
        try:
            await asyncio.wait(
                {reading, failed}, timeout=timeout + 10, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in (reading, failed):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if checker.returncode is None:
                checker.kill()
                await checker.wait()
        if self.failure is not None:
            raise self.failure
        if pending:
            raise LaunchError(f"not ready after {timeout:.0f} s: {', '.join(sorted(pending))}")

    async def _read_ready(self, checker: asyncio.subprocess.Process, pending: set[str]) -> None:
        """Note each service the probe reports ready, removing it from `pending`."""
        assert checker.stdout is not None
        running = {r.spec.name: r for r in self._services}
        async for raw in checker.stdout:
            word, _, name = raw.decode().strip().partition(" ")
            if word == "ready" and name in pending:
                pending.discard(name)
                running[name].policy.ready()
                self.say(f"{name} is ready on {running[name].spec.address}")
        await checker.wait()

    def pids(self) -> dict[str, int]:
        """The current pid of each service, by name ("order-executor-2")."""
        return {
            r.spec.name: r.process.pid
            for r in self._services
            if r.process is not None and r.process.returncode is None
        }

    def restarts(self) -> dict[str, int]:
        return {r.spec.name: r.restarts for r in self._services}

    async def stop(self) -> None:
        """SIGTERM to every service, SIGKILL to what is left after the grace period."""
        self._stopping = True
        if self.control is not None:
            await self.control.close()
        for running in self._services:
            if running.supervisor is not None:
                running.supervisor.cancel()
        alive = [
            r.process
            for r in self._services
            if r.process is not None and r.process.returncode is None
        ]
        self.say(f"stopping {len(alive)} services")
        for process in alive:
            _signal_group(process.pid, signal.SIGTERM)
        waits = [asyncio.create_task(p.wait()) for p in alive]
        if waits:
            _, late = await asyncio.wait(waits, timeout=self.stop_grace_s)
            if late:
                self.say(f"{len(late)} services ignored SIGTERM; killing them")
            for process in alive:
                _signal_group(process.pid, signal.SIGKILL)
            await asyncio.wait(waits, timeout=self.stop_grace_s)
        if self._readers:
            await asyncio.wait(list(self._readers), timeout=1.0)
        for running in self._services:
            if running.supervisor is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await running.supervisor
        self.say("all services stopped")


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the service's process group (it and anything it started)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def run(settings: Settings, color: bool) -> int:
    launcher = Launcher(settings, color=color)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    code = 0
    try:
        await launcher.start()
        ready = asyncio.create_task(launcher.wait_ready())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
        elif ready.exception() is not None:
            launcher.say(f"error: {ready.exception()}")
            code = 1
        else:
            _announce(launcher, settings)
            await stopped
        stopped.cancel()
    finally:
        await launcher.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return code


def _announce(launcher: Launcher, settings: Settings) -> None:
    host, port = health.local(settings.orchestrator_address)
    base = f"http://{host}:{port}"
    launcher.say("all services ready")
    launcher.say(f"the shop:    {base}/")
    launcher.say(f"the cluster: {base}/cluster")
    launcher.say(f"checkout:    POST {base}/checkout   (Ctrl-C stops everything)")


def main(settings: Settings, color: bool) -> int:
    """`bookstore up`: run until Ctrl-C or SIGTERM; 1 if a service never came up."""
    use_color = color and sys.stdout.isatty() and os.environ.get("NO_COLOR") is None
    return asyncio.run(run(settings, use_color))
