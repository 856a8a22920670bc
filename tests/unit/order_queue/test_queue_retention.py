"""Retention of executed orders and a full disk, on the store itself."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from queue_fakes import FakeClock, Wall
from store_calls import complete, dequeue, enqueue

from bookstore.order_queue.db import DiskFull
from bookstore.order_queue.state import Item, UnknownOrder
from bookstore.order_queue.store import QueueStore


def big_items(n: int = 100) -> list[Item]:
    return [Item(f"book-{i}", "T" * 256, 1) for i in range(n)]


async def opened(db_path: Path, clock: FakeClock, **options: Any) -> QueueStore:
    store = QueueStore(db_path, sweep_interval_s=0, clock=clock, **options)
    await store.open()
    return store


async def execute(store: QueueStore, epoch: int, count: int) -> list[str]:
    done = []
    for _ in range(count):
        taken = await dequeue(store, 1, epoch, 0)
        assert taken is not None
        await complete(store, 1, epoch, taken[1].lease_id, taken[0].order_id)
        done.append(taken[0].order_id)
    return done


async def test_executed_orders_leave_the_file_after_the_retention(
    db_path: Path, clock: FakeClock
) -> None:
    wall = Wall()
    store = await opened(db_path, clock, retention_s=3600, wall_clock=wall)
    for i in range(4):
        await enqueue(store, f"old{i}", [Item("b", "B", 1)], "n")
    epoch = await store.register_leader(1)
    old = await execute(store, epoch, 3)  # old3 stays queued
    wall.now += timedelta(minutes=59)
    await enqueue(store, "new", [Item("b", "B", 1)], "n")
    (recent,) = await execute(store, epoch, 1)
    assert await store.disk.sweep() == 0  # nothing is an hour old yet

    wall.now += timedelta(minutes=2)
    assert await store.disk.sweep() == 3
    for order_id in old:
        with pytest.raises(UnknownOrder):
            await store.get_order(order_id)
    assert (await store.get_order(recent)).state == "executed"
    assert store.status().depth == 1  # the queued order is untouched
    await store.close()

    # Sequence numbers keep growing past what was swept, and the count stands.
    again = await opened(db_path, clock, wall_clock=wall)
    try:
        assert again.status().executed == 4
        sequence, duplicate = await enqueue(again, "later", [Item("b", "B", 1)], "n")
        assert (sequence, duplicate) == (6, False)
    finally:
        await again.close()


async def test_the_writer_sweeps_periodically(db_path: Path, clock: FakeClock) -> None:
    store = QueueStore(db_path, retention_s=0, sweep_interval_s=0.01, clock=clock)
    await store.open()
    try:
        await enqueue(store, "a", [Item("b", "B", 1)], "n")
        epoch = await store.register_leader(1)
        await execute(store, epoch, 1)
        for _ in range(1000):  # the sweeper runs every 10 ms
            if store.disk.swept:
                break
            await asyncio.sleep(0.01)
        assert store.disk.swept == 1
        with pytest.raises(UnknownOrder):
            await store.get_order("a")
    finally:
        await store.close()


async def test_a_full_disk_refuses_writes_keeps_reads_and_recovers(
    db_path: Path, clock: FakeClock
) -> None:
    fatal: list[BaseException] = []
    store = QueueStore(db_path, clock=clock, on_fatal=fatal.append)
    await store.open()
    acknowledged = []
    for i in range(3):
        await enqueue(store, f"o{i}", big_items(), "n")
        acknowledged.append(f"o{i}")
    db = store.disk.db
    assert db is not None
    # The file may not grow by one more page: what SQLite does on ENOSPC.
    (pages,) = db.conn.execute("PRAGMA page_count").fetchone()
    db.conn.execute(f"PRAGMA max_page_count = {pages}")

    for i in range(3):
        with pytest.raises(DiskFull, match="full"):
            await enqueue(store, f"refused{i}", big_items(), "n")
    assert store.disk.disk_full and store.disk.failed is None and not fatal
    assert store.status().depth == 3  # reads go on
    assert (await store.get_order("o1")).state == "queued"

    db.conn.execute(f"PRAGMA max_page_count = {pages * 1000}")  # space again
    assert (await enqueue(store, "after", big_items(), "n"))[1] is False
    assert not store.disk.disk_full
    acknowledged.append("after")
    await store.close()

    again = await opened(db_path, clock)
    try:
        assert {o.order_id for o in again.state.orders.values()} == set(acknowledged)
    finally:
        await again.close()


async def test_numbers_keep_growing_when_every_order_was_swept(
    db_path: Path, clock: FakeClock
) -> None:
    wall = Wall()
    store = await opened(db_path, clock, retention_s=60, wall_clock=wall)
    await enqueue(store, "a", [Item("b", "B", 1)], "n")
    epoch = await store.register_leader(1)
    await execute(store, epoch, 1)
    wall.now += timedelta(seconds=61)
    assert await store.disk.sweep() == 1
    await store.close()

    again = await opened(db_path, clock)
    try:
        assert await enqueue(again, "b", [Item("b", "B", 1)], "n") == (2, False)
        epoch = await again.register_leader(1)
        assert await execute(again, epoch, 1) == ["b"]
        record = (await again.get_order("b")).execution
        assert record is not None and record.sequence == 2
        assert again.status().executed == 2
    finally:
        await again.close()
