"""Three real replicas as gRPC servers on loopback, in this process, each with its own
SQLite file; the `cluster` and `client` fixtures (conftest.py) start them."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ports import free_ports

from bookstore.books_database.messages import Compaction
from bookstore.books_database.service import BooksDatabaseReplica, ReplicaConfig

WAIT_S = 15.0  # generous: the tests wait for things, they never assert how fast


class Cluster:
    def __init__(self, tmp_path: Path, compaction: Compaction | None = None) -> None:
        self.addresses = {i: f"127.0.0.1:{p}" for i, p in enumerate(free_ports(3), 1)}
        self.tmp_path = tmp_path
        self.compaction = compaction or Compaction()
        self.replicas: dict[int, BooksDatabaseReplica] = {}

    async def start(self, replica_id: int) -> None:
        path = self.tmp_path / f"books-database-{replica_id}.sqlite3"
        config = ReplicaConfig(replica_id, self.addresses, path, compaction=self.compaction)
        replica = BooksDatabaseReplica(config, self.addresses[replica_id])
        await replica.start()
        self.replicas[replica_id] = replica

    async def kill(self, replica_id: int) -> None:
        await self.replicas.pop(replica_id).stop()

    def primary(self) -> int | None:
        leaders = [i for i, r in self.replicas.items() if r.driver.replica.role == "primary"]
        return leaders[0] if len(leaders) == 1 else None

    async def converged(self) -> set[str]:
        """Wait until every running replica has applied the same state; its digest."""
        for _ in range(int(WAIT_S / 0.05)):
            states = {
                (r.driver.replica.machine.applied, r.driver.replica.machine.digest())
                for r in self.replicas.values()
            }
            if len(states) == 1:
                return {d for _, d in states}
            await asyncio.sleep(0.05)
        raise AssertionError(f"replicas did not converge: {states}")
