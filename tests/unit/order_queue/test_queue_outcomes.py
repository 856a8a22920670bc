"""Orders that carry a payment token and amount, and completions with an outcome."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from queue_fakes import FakeClock
from store_calls import complete, dequeue, enqueue

from bookstore.order_queue.state import BadRequest, Item
from bookstore.order_queue.store import QueueStore

ITEMS = [Item("b001", "Book", 2)]


async def leased(store: QueueStore) -> tuple[int, str, str]:
    """(epoch, lease id, order id) of the next order, leased by replica 1."""
    epoch = await store.register_leader(1)
    taken = await dequeue(store, 1, epoch, 0)
    assert taken is not None
    order, lease = taken
    return epoch, lease.lease_id, order.order_id


async def test_the_token_and_amount_travel_with_the_order_and_survive_a_restart(
    store: QueueStore, db_path: Path, clock: FakeClock
) -> None:
    await enqueue(store, "o1", ITEMS, "Ann", "tok_abc", 2598)
    await store.close()
    again = QueueStore(db_path, clock=clock)
    await again.open()
    try:
        taken = await dequeue(again, 1, await again.register_leader(1), 0)
        assert taken is not None
        assert (taken[0].payment_token, taken[0].amount_cents) == ("tok_abc", 2598)
    finally:
        await again.close()


async def test_an_executed_order_records_its_amount_a_rejected_one_its_reason(
    store: QueueStore,
) -> None:
    await enqueue(store, "paid", ITEMS, "Ann", "tok_a", 2598)
    await enqueue(store, "declined", ITEMS, "Bob", "tok_b", 2598)
    epoch, lease, order_id = await leased(store)
    record, _ = await complete(store, 1, epoch, lease, order_id)  # the amount enqueued
    assert (record.outcome, record.reason, record.amount_cents) == ("executed", "", 2598)
    taken = await dequeue(store, 1, epoch, 0)
    assert taken is not None
    reason = "payment declined: insufficient funds"
    record, _ = await complete(
        store, 1, epoch, taken[1].lease_id, taken[0].order_id, "rejected", reason, 2598
    )
    assert (record.outcome, record.reason, record.amount_cents) == ("rejected", reason, 0)
    view = await store.get_order(taken[0].order_id)
    assert view.execution == record


async def test_a_completion_with_an_unknown_outcome_is_refused(store: QueueStore) -> None:
    await enqueue(store, "o1", ITEMS, "Ann")
    epoch, lease, order_id = await leased(store)
    with pytest.raises(BadRequest, match="outcome"):
        await complete(store, 1, epoch, lease, order_id, "lost")
    assert store.status().depth == 1


async def test_a_file_of_an_earlier_release_gains_the_new_columns(
    db_path: Path, clock: FakeClock
) -> None:
    db_path.parent.mkdir(parents=True)
    old = sqlite3.connect(db_path)
    old.executescript(
        "CREATE TABLE orders (order_id TEXT PRIMARY KEY, items TEXT NOT NULL,"
        " customer_name TEXT NOT NULL, books INTEGER NOT NULL, sequence INTEGER NOT NULL UNIQUE,"
        " state TEXT NOT NULL, enqueued_at TEXT NOT NULL);"
        "CREATE TABLE executions (order_id TEXT PRIMARY KEY, executor INTEGER NOT NULL,"
        " epoch INTEGER NOT NULL, sequence INTEGER NOT NULL UNIQUE, executed_at TEXT NOT NULL);"
        'INSERT INTO orders VALUES (\'old\', \'[{"bookId": "b1", "title": "B",'
        " \"quantity\": 1}]', 'Ann', 1, 1, 'queued', '2026-01-01T00:00:00Z');"
    )
    old.close()
    store = QueueStore(db_path, clock=clock)
    await store.open()
    try:
        epoch, lease, order_id = await leased(store)
        assert order_id == "old"
        record, _ = await complete(store, 1, epoch, lease, order_id)
        assert (record.outcome, record.amount_cents) == ("executed", 0)
    finally:
        await store.close()
