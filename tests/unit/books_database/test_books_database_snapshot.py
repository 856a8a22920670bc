"""Log compaction with real replicas (gRPC on loopback, SQLite files, in this
process): a replica stopped while the others took many orders comes back behind
the primary's snapshot, installs it through Deliver, and ends with the same
state; every log stays short, on disk as in memory."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from loopback_cluster import WAIT_S, Cluster

from bookstore.books_database import replication
from bookstore.books_database.client import BooksDatabaseClient
from bookstore.books_database.messages import Compaction

BOOK = "b001"
ORDERS = 120
COMPACTION = Compaction(keep=10, every=10)


def log_rows(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM log").fetchone()[0])


async def test_a_replica_restarted_after_many_orders_catches_up_from_a_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replication, "SNAPSHOT_ROWS", 25)  # a snapshot in several parts
    cluster = Cluster(tmp_path, COMPACTION)
    for i in (1, 2, 3):
        await cluster.start(i)
    db = BooksDatabaseClient(cluster.addresses, deadline_s=WAIT_S)
    try:
        await db.set_stock({BOOK: 1_000}, request_id="restock")
        before = 1_000
        primary = cluster.primary()
        down = next(i for i in (1, 2, 3) if i != primary)
        await cluster.kill(down)
        orders = iter(range(ORDERS))

        async def client() -> None:
            for n in orders:
                assert (await db.reserve(f"o{n}", {BOOK: 1}, epoch=1)).ok
                await db.commit(f"o{n}", epoch=1)

        await asyncio.gather(*(client() for _ in range(4)))
        await cluster.start(down)
        (digest,) = await cluster.converged()
        restarted = cluster.replicas[down].driver.replica
        assert restarted.snapshots_installed >= 1
        assert restarted.machine.books[BOOK].stock == before - ORDERS
        assert restarted.machine.digest() == digest
        bound = COMPACTION.keep + COMPACTION.every + 5  # a turn's worth of entries at most
        for i, replica in cluster.replicas.items():
            assert len(replica.driver.replica.log.entries) <= bound, i
            assert log_rows(tmp_path / f"books-database-{i}.sqlite3") <= bound + 5, i
    finally:
        await db.close()
        for i in list(cluster.replicas):
            await cluster.kill(i)
