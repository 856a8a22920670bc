"""Real order-queue and order-executor processes on free loopback ports.

Each cluster gets its own temporary BOOKSTORE_DATA_DIR and ports, runs the
services exactly as the launcher does (with `transactions=True` also the three
books-database replicas and payment, and every order then carries a payment
token and its amount, so each is executed as a two-phase commit) (`python -m bookstore serve ...`,
configured only through the environment) and kills every process it started
when it is closed. A small gRPC client drives the queue and records, Jepsen
style, what every enqueue was told.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import grpc
import queue_calls
from ports import free_ports
from tls_support import make_certs, transport

from bookstore import grpcutil, health
from bookstore.catalogue import load_catalogue
from bookstore.pb import (
    common_pb2,
    executor_pb2,
    executor_pb2_grpc,
    payment_pb2,
    payment_pb2_grpc,
    queue_pb2,
    queue_pb2_grpc,
)

START_TIMEOUT_S = 60.0  # a start on a busy machine: a bound on the wait, not a speed


@dataclass
class History:
    """What each enqueue attempt was told: "ok", "unknown" (timeout) or "failed"."""

    outcomes: dict[str, str] = field(default_factory=dict)
    books: dict[str, int] = field(default_factory=dict)

    def acknowledged(self) -> set[str]:
        return {o for o, r in self.outcomes.items() if r == "ok"}


def kill_all(procs: Iterable[subprocess.Popen[bytes]]) -> None:
    """SIGKILL (after SIGCONT, in case it was paused) every process still running."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)
                proc.send_signal(signal.SIGKILL)
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


TXN_BOOK = "b001"  # the book orders take when the cluster runs transactions
TXN_CARD = "4242424242424242"


class Cluster:
    def __init__(
        self,
        root: Path,
        executors: int = 4,
        env: dict[str, str] | None = None,
        transactions: bool = False,
    ) -> None:
        self.root = root
        self.ids = list(range(1, executors + 1))
        self.transactions = transactions
        self._token = ""
        book = load_catalogue().by_id(TXN_BOOK)
        self._price = book.price_cents if book else 0
        ports = free_ports(1 + executors + 4)
        self.database_addresses = {
            i: f"127.0.0.1:{p}" for i, p in zip((1, 2, 3), ports[-4:-1], strict=True)
        }
        self.payment_address = f"127.0.0.1:{ports[-1]}"
        ports = ports[:-4]
        self.queue_address = f"127.0.0.1:{ports[0]}"
        self.executor_addresses = {
            i: f"127.0.0.1:{p}" for i, p in zip(self.ids, ports[1:], strict=True)
        }
        self.data_dir = root / "data"
        self.env = {
            **os.environ,
            "BOOKSTORE_DATA_DIR": str(self.data_dir),
            "ORDER_QUEUE_ADDRESS": self.queue_address,
            "ORDER_EXECUTOR_ADDRESSES": ",".join(
                f"{i}={a}" for i, a in self.executor_addresses.items()
            ),
            "BOOKS_DATABASE_ADDRESSES": ",".join(
                f"{i}={a}" for i, a in self.database_addresses.items()
            ),
            "PAYMENT_ADDRESS": self.payment_address,
            "BOOKS_INITIAL_STOCK": "1000000",
            "BOOKSTORE_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        make_certs(self.env)
        # The test speaks to the queue as the orchestrator (enqueue, watch, read)
        # and probes and reads the executors as the launcher.
        self.as_orchestrator = transport(self.env, "orchestrator")
        self.as_launcher = transport(self.env, "launcher")
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.history = History()
        self._channel: grpc.aio.Channel | None = None
        self._exec_channels: dict[int, grpc.aio.Channel] = {}

    # -- processes -------------------------------------------------------------------

    def _spawn(self, name: str, *args: str) -> None:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 (the child owns it)
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "bookstore", "serve", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    async def start_queue(self) -> None:
        self._spawn("queue", "order-queue")
        # Probed with the orchestrator's credentials: gRPC then shares the connection
        # with the orchestrator's channels, so they too see the queue up at once.
        await self.wait_healthy(self.queue_address, self.as_orchestrator)

    async def start_executor(self, i: int, wait: bool = True) -> None:
        self._spawn(f"executor-{i}", "order-executor", "--replica-id", str(i))
        if wait:
            await self.wait_healthy(self.executor_addresses[i])

    async def start(self) -> None:
        await self.start_queue()
        if self.transactions:
            for i in self.database_addresses:
                self._spawn(f"books-database-{i}", "books-database", "--replica-id", str(i))
            self._spawn("payment", "payment")
            addresses = [*self.database_addresses.values(), self.payment_address]
            await asyncio.gather(*(self.wait_healthy(a) for a in addresses))
            self._token = await self._tokenize()
        await asyncio.gather(*(self.start_executor(i) for i in self.ids))

    async def _tokenize(self) -> str:
        channel = transport(self.env, "transaction-verification").channel(self.payment_address)
        try:
            stub = payment_pb2_grpc.PaymentStub(channel)
            card = payment_pb2.TokenizeRequest(number=TXN_CARD, expiration="12/39", cvv="123")
            batch = payment_pb2.TokenizeBatchRequest(cards=[card])
            (outcome,) = (await stub.TokenizeBatch(batch, timeout=10.0)).outcomes
            return str(outcome.token.token)
        finally:
            await channel.close()

    async def wait_healthy(self, address: str, via: grpcutil.Transport | None = None) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if await health.grpc_serving(address, timeout=0.5, transport=via or self.as_launcher):
                return
            await asyncio.sleep(0.1)
        raise TimeoutError(f"{address} not healthy within {START_TIMEOUT_S}s")

    def signal(self, name: str, sig: int) -> None:
        self.procs[name].send_signal(sig)

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    async def close(self) -> None:
        for channel in [self._channel, *self._exec_channels.values()]:
            if channel is not None:
                await channel.close()
        kill_all(self.procs.values())

    # -- the queue, as a client ----------------------------------------------------------

    @property
    def queue(self) -> queue_pb2_grpc.OrderQueueAsyncStub:
        if self._channel is None:
            self._channel = self.as_orchestrator.channel(self.queue_address)
        return cast(
            "queue_pb2_grpc.OrderQueueAsyncStub", queue_pb2_grpc.OrderQueueStub(self._channel)
        )

    def executor(self, i: int) -> executor_pb2_grpc.OrderExecutorAsyncStub:
        if i not in self._exec_channels:
            self._exec_channels[i] = self.as_launcher.channel(self.executor_addresses[i])
        return cast(
            "executor_pb2_grpc.OrderExecutorAsyncStub",
            executor_pb2_grpc.OrderExecutorStub(self._exec_channels[i]),
        )

    async def enqueue(self, books: int, order_id: str | None = None, timeout: float = 2.0) -> str:
        """Enqueue one order of `books` books; the outcome goes into the history."""
        oid = order_id or str(uuid.uuid4())
        self.history.books[oid] = books
        book = TXN_BOOK if self.transactions else "b1"
        request = queue_pb2.EnqueueRequest(
            order=queue_pb2.QueuedOrder(
                order_id=common_pb2.OrderId(value=oid),
                items=[common_pb2.OrderItem(book_id=book, title="A book", quantity=books)],
                customer_name="Test Customer",
                payment_token=self._token,
                amount_cents=self._price * books if self.transactions else 0,
            )
        )
        try:
            await queue_calls.enqueue(self.queue, request, timeout=timeout)
            self.history.outcomes[oid] = "ok"
        except grpc.aio.AioRpcError as exc:
            unknown = exc.code() in (
                grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.CANCELLED,
            )
            if self.history.outcomes.get(oid) != "ok":
                self.history.outcomes[oid] = "unknown" if unknown else "failed"
        return oid

    async def status(self) -> queue_pb2.QueueStatus:
        reply: queue_pb2.QueueStatus = await self.queue.Status(common_pb2.Empty(), timeout=2.0)
        return reply

    async def executor_status(self, i: int) -> executor_pb2.ExecutorStatus | None:
        try:
            reply: executor_pb2.ExecutorStatus = await self.executor(i).Status(
                common_pb2.Empty(), timeout=0.5
            )
            return reply
        except grpc.aio.AioRpcError:
            return None

    async def leader(self) -> int | None:
        """The replica holding the queue's epoch and calling itself leader."""
        try:
            q = await self.status()
        except grpc.aio.AioRpcError:
            return None
        s = await self.executor_status(q.leader_id) if q.leader_id else None
        if s is not None and s.role == "leader" and s.epoch == q.epoch:
            return int(q.leader_id)
        return None

    async def wait_for(self, what: Any, timeout: float | None = None, every: float = 0.05) -> Any:
        """Poll an async predicate until it returns something truthy (without a
        timeout, the test's own timeout is the backstop)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with contextlib.suppress(grpc.aio.AioRpcError):
                value = await what()
                if value:
                    return value
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout}s")
            await asyncio.sleep(every)

    async def wait_drained(self, timeout: float = 20.0) -> None:
        async def drained() -> bool:
            s = await self.status()
            return s.depth == 0

        await self.wait_for(drained, timeout)

    # -- the queue's file ----------------------------------------------------------------

    def executions(self) -> dict[str, tuple[int, int, int, str]]:
        """order id -> (executor, epoch, sequence, executed_at), read from the file."""
        path = self.data_dir / "order-queue" / "queue.db"
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        try:
            # Both reads in one transaction, so from one snapshot: the queue may commit
            # an execution between two separate reads.
            conn.execute("BEGIN")
            rows = conn.execute(
                "SELECT order_id, executor, epoch, sequence, executed_at FROM executions"
            ).fetchall()
            count = conn.execute("SELECT COUNT(*) FROM orders WHERE state='executed'").fetchone()
        finally:
            conn.close()
        result = {r[0]: (int(r[1]), int(r[2]), int(r[3]), str(r[4])) for r in rows}
        assert len(result) == len(rows) == count[0]  # one record per executed order
        return result

    def check_history(self) -> dict[str, tuple[int, int, int, str]]:
        """Acknowledged => executed exactly once; nothing executed that was never sent."""
        executions = self.executions()
        missing = self.history.acknowledged() - set(executions)
        assert not missing, f"acknowledged but never executed: {sorted(missing)[:5]}"
        unknown_origin = set(executions) - set(self.history.outcomes)
        assert not unknown_origin, f"executed but never enqueued: {sorted(unknown_origin)[:5]}"
        sequences = [e[2] for e in executions.values()]
        assert len(set(sequences)) == len(sequences)
        return executions
