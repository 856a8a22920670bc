"""Three real books-database replicas (`python -m bookstore serve books-database
--replica-id N`) on free loopback ports, each with its own SQLite file under a
temporary BOOKSTORE_DATA_DIR, and a load of orders (reserve then commit one
copy each) whose outcomes are recorded, Jepsen style: a deadline exceeded is
"unknown", never "failed", and is resolved later by retrying the same request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ports import free_ports
from queue_harness import kill_all
from tls_support import make_certs, transport

from bookstore import grpcutil, health
from bookstore.books_database.client import BooksDatabaseClient
from bookstore.pb import books_database_pb2 as pb

IDS = (1, 2, 3)
WAIT_S = 60.0  # generous: the tests wait for things, they never assert how fast
BOOK = "b001"


@dataclass
class Load:
    """Orders of one copy of BOOK each: txn id -> "committed" | "refused" | "unknown"."""

    outcomes: dict[str, str] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, db: BooksDatabaseClient, worker: int) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            txn = f"w{worker}-{n}"
            self.outcomes[txn] = "unknown"
            try:
                if (await db.reserve(txn, {BOOK: 1}, epoch=1)).ok:
                    await db.commit(txn, epoch=1)
                    self.outcomes[txn] = "committed"
                else:
                    self.outcomes[txn] = "refused"
            except grpcutil.ServiceUnavailable:
                pass  # outcome unknown: resolved by `settle`

    async def settle(self, db: BooksDatabaseClient) -> int:
        """Retry every unknown order with its own request ids; the copies committed."""
        for txn, outcome in self.outcomes.items():
            if outcome == "unknown":
                reserved = await db.reserve(txn, {BOOK: 1}, epoch=1)
                if reserved.ok:
                    await db.commit(txn, epoch=1)
                self.outcomes[txn] = "committed" if reserved.ok else "refused"
        return sum(1 for o in self.outcomes.values() if o == "committed")


class Replicas:
    def __init__(self, root: Path, initial_stock: int = 100_000) -> None:
        self.root = root
        self.addresses = {i: f"127.0.0.1:{p}" for i, p in zip(IDS, free_ports(3), strict=True)}
        self.env = {
            **os.environ,
            "BOOKSTORE_DATA_DIR": str(root / "data"),
            "BOOKS_DATABASE_ADDRESSES": ",".join(f"{i}={a}" for i, a in self.addresses.items()),
            "BOOKS_INITIAL_STOCK": str(initial_stock),
            "PYTHONUNBUFFERED": "1",
        }
        make_certs(self.env)
        # The load speaks as an executor (the coordinator reserves and commits).
        self.as_launcher = transport(self.env, "launcher")
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.db = BooksDatabaseClient(
            self.addresses,
            deadline_s=WAIT_S,
            channel_factory=transport(self.env, "order-executor-1").channel,
        )
        # Setting the stock by hand is the operator's: the launcher's identity.
        self.admin = BooksDatabaseClient(
            self.addresses, deadline_s=WAIT_S, channel_factory=self.as_launcher.channel
        )

    def spawn(self, i: int) -> None:
        log = open(self.root / f"books-database-{i}.log", "ab")  # noqa: SIM115 (the child owns it)
        self.procs[i] = subprocess.Popen(
            [sys.executable, "-m", "bookstore", "serve", "books-database", "--replica-id", str(i)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    async def start(self) -> None:
        for i in IDS:
            self.spawn(i)
        for i in IDS:
            await self.wait_serving(i)

    async def wait_serving(self, i: int) -> None:
        address = self.addresses[i]
        await self.wait_for(lambda: health.grpc_serving(address, 0.5, self.as_launcher))

    async def wait_for(self, predicate: object) -> object:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            with contextlib.suppress(grpcutil.ServiceUnavailable, grpcutil.Rejected):
                value = await predicate()  # type: ignore[operator]
                if value:
                    return value
            await asyncio.sleep(0.05)
        raise TimeoutError(f"not within {WAIT_S} s")

    async def status(self, i: int) -> pb.ReplicaStatus | None:
        try:
            return await self.db.status(i)
        except (grpcutil.ServiceUnavailable, grpcutil.Rejected):
            return None

    async def primary(self, other_than: int = 0) -> int:
        """The replica that is primary and caught up (other than `other_than`)."""

        async def find() -> int:
            for i in IDS:
                s = await self.status(i) if i != other_than else None
                if s is not None and s.role == "primary" and s.caught_up:
                    return i
            return 0

        found = await self.wait_for(find)
        assert isinstance(found, int)
        return found

    async def converged(self) -> str:
        """Wait until every replica has applied the same state; its digest."""
        return await self.converged_among(list(IDS))

    async def converged_among(self, ids: list[int]) -> str:
        """Wait until the replicas `ids` have applied the same state; its digest."""

        async def same() -> str:
            states = [await self.status(i) for i in ids]
            if any(s is None for s in states):
                return ""
            keys = {(s.applied_index, s.digest) for s in states if s is not None}
            return keys.pop()[1] if len(keys) == 1 else ""

        digest = await self.wait_for(same)
        assert isinstance(digest, str)
        return digest

    def kill(self, i: int) -> None:
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait(timeout=10)

    async def close(self) -> None:
        await self.db.close()
        await self.admin.close()
        kill_all(self.procs.values())
