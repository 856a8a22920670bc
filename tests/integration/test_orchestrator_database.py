"""The orchestrator's and the cluster view's windows on the books database over real
gRPC: three replicas in this process on loopback, each with its own SQLite file; the live
stock, an order's replication steps, the cluster probe's replicas, and stock unknown
once they are gone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from ports import free_ports

from bookstore.books_database.client import BooksDatabaseClient
from bookstore.books_database.service import BooksDatabaseReplica, ReplicaConfig
from bookstore.catalogue import load_catalogue
from bookstore.cluster_view.probe import ClusterProbe
from bookstore.cluster_view.state import ClusterState, Replication
from bookstore.orchestrator.stock import DatabaseStock
from bookstore.settings import Settings

T = TypeVar("T")
BOOK = "b001"
WAIT_S = 15.0  # generous: the tests wait for things, they never assert how fast


async def eventually(get: Callable[[], Awaitable[T | None]]) -> T:
    for _ in range(int(WAIT_S / 0.05)):
        value = await get()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {WAIT_S} s")


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[dict[int, BooksDatabaseReplica]]:
    addresses = {i: f"127.0.0.1:{p}" for i, p in enumerate(free_ports(3), 1)}
    running = {}
    for i, address in addresses.items():
        config = ReplicaConfig(i, addresses, tmp_path / f"books-database-{i}.sqlite3")
        running[i] = BooksDatabaseReplica(config, address)
        await running[i].start()
    try:
        yield running
    finally:
        for replica in running.values():
            await replica.stop()


async def test_stock_replication_and_status_from_the_replicas(
    replicas: dict[int, BooksDatabaseReplica],
) -> None:
    addresses = {i: r.config.addresses[i] for i, r in replicas.items()}
    unused = free_ports(6)
    settings = Settings(
        books_database_addresses=addresses,
        order_executor_addresses={i: f"127.0.0.1:{p}" for i, p in enumerate(unused[:4], 1)},
        payment_address=f"127.0.0.1:{unused[4]}",
        order_queue_address=f"127.0.0.1:{unused[5]}",
    )
    stock = DatabaseStock(settings)
    await stock.start()
    probe = ClusterProbe(settings)
    db = BooksDatabaseClient(addresses, deadline_s=WAIT_S)
    try:
        initial = {b.book_id: b.stock for b in load_catalogue().all()}
        assert await eventually(stock.available) == initial

        assert (await db.reserve("o-int", {BOOK: 2}, epoch=1)).ok
        available = await stock.available()
        assert available is not None and available[BOOK] == initial[BOOK] - 2

        async def replicated() -> Replication | None:
            found = await probe.replication("o-int")
            kinds = [s.kind for s in found.steps]
            return found if kinds.count("applied") == 3 and "acked" in kinds else None

        found = await eventually(replicated)
        steps = found.steps
        assert found.answered == (1, 2, 3)
        (appended,) = [s for s in steps if s.kind == "appended"]
        assert {s.replica_id for s in steps if s.kind == "stored"} == {1, 2, 3} - {
            appended.replica_id
        }
        assert {s.index for s in steps} == {appended.index} and appended.op == "reserve"

        async def alike() -> ClusterState | None:
            state = await probe.state()
            keys = {(r.applied_index, r.digest) for r in state.replicas}
            return state if len(keys) == 1 and all(r.alive for r in state.replicas) else None

        state = await eventually(alike)
        replica_states = state.replicas
        assert [r.replica_id for r in replica_states] == [1, 2, 3]
        assert [r.role for r in replica_states].count("primary") == 1
        assert {r.view for r in replica_states} == {replica_states[0].view}
        assert state.payment is not None and state.payment.healthy is False
        assert state.in_doubt == ()

        for replica in replicas.values():
            await replica.stop()
        assert await stock.available() is None
    finally:
        await db.close()
        await stock.close()
        await probe.close()
