from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from queue_fakes import FakeClock, Wall
from store_calls import complete, dequeue, enqueue

from bookstore.order_queue.db import StorageFailure
from bookstore.order_queue.state import (
    BadRequest,
    Item,
    LeaderAlive,
    LeaseLost,
    StaleEpoch,
    UnknownOrder,
    UnknownReplica,
)
from bookstore.order_queue.store import QueueStore


def items(*quantities: int) -> list[Item]:
    return [Item(f"b{i}", f"Book {i}", q) for i, q in enumerate(quantities)]


async def reopen(path: Path, clock: FakeClock) -> QueueStore:
    s = QueueStore(path, lease_s=2.0, failure_timeout_s=0.5, clock=clock)
    await s.open()
    return s


async def test_enqueue_is_idempotent_by_order_id(store: QueueStore) -> None:
    assert await enqueue(store, "a", items(1), "Ann") == (1, False)
    assert await enqueue(store, "b", items(2), "Bob") == (2, False)
    assert await enqueue(store, "a", items(5), "Ann again") == (1, True)
    assert store.status().depth == 2


async def test_database_is_wal_with_full_sync_and_holds_no_card_data(
    store: QueueStore, db_path: Path
) -> None:
    await enqueue(store, "a", items(2), "Ann")
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    columns = {r[1] for r in conn.execute("PRAGMA table_info(orders)")}
    assert columns == {
        "order_id",
        "items",
        "customer_name",
        "books",
        "sequence",
        "state",
        "enqueued_at",
        "payment_token",  # the payment service's opaque token, never the card
        "amount_cents",
    }
    conn.close()
    # The store's own connection syncs fully on every commit.
    assert store.disk.db is not None
    assert store.disk.db.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


@pytest.mark.parametrize(
    ("quantities", "why"),
    [((), "at least one item"), ((0,), "outside"), ((-1,), "outside"), ((101,), "outside")],
)
async def test_bad_orders_are_refused_and_change_nothing(
    store: QueueStore, quantities: tuple[int, ...], why: str
) -> None:
    with pytest.raises(BadRequest, match=why) as info:
        await enqueue(store, "x", items(*quantities), "Ann")
    assert str(info.value).startswith("BAD_REQUEST: ")
    assert store.status().depth == 0
    with pytest.raises(BadRequest):
        await enqueue(store, "", items(1), "Ann")


async def test_dequeue_takes_most_books_first_then_arrival(store: QueueStore) -> None:
    for oid, q in [("a", 1), ("b", 3), ("c", 1), ("d", 3), ("e", 5)]:
        await enqueue(store, oid, items(q), "n")
    epoch = await store.register_leader(1)
    got = []
    while (taken := await dequeue(store, 1, epoch, 0)) is not None:
        order, lease = taken
        got.append(order.order_id)
        await complete(store, 1, epoch, lease.lease_id, order.order_id)
    assert got == ["e", "b", "d", "a", "c"]


async def test_an_expired_lease_is_delivered_again_ahead_of_lower_priority(
    store: QueueStore, clock: FakeClock
) -> None:
    await enqueue(store, "big", items(4), "n")
    await enqueue(store, "small", items(1), "n")
    epoch = await store.register_leader(1)
    first = await dequeue(store, 1, epoch, 0)
    assert first is not None and first[0].order_id == "big"
    clock.advance(1.0)
    assert store.status().leased == 1
    clock.advance(1.5)  # past the 2 s lease
    again = await dequeue(store, 1, epoch, 0)
    assert again is not None and again[0].order_id == "big"
    assert again[0].deliveries == 2
    # The old lease no longer completes: another lease holds the order.
    with pytest.raises(LeaseLost):
        await complete(store, 1, epoch, first[1].lease_id, "big")


async def test_renewing_keeps_the_lease(store: QueueStore, clock: FakeClock) -> None:
    await enqueue(store, "a", items(1), "n")
    epoch = await store.register_leader(1)
    taken = await dequeue(store, 1, epoch, 0)
    assert taken is not None
    for _ in range(3):
        clock.advance(1.5)
        assert await store.renew(1, epoch, taken[1].lease_id, "a") == 2.0
    assert await dequeue(store, 1, epoch, 0) is None
    record, dup = await complete(store, 1, epoch, taken[1].lease_id, "a")
    assert not dup and record.executor == 1


async def test_a_new_epoch_fences_the_old_leader_and_frees_its_lease(
    store: QueueStore, clock: FakeClock
) -> None:
    await enqueue(store, "a", items(2), "n")
    old = await store.register_leader(4)
    taken = await dequeue(store, 4, old, 0)
    assert taken is not None
    clock.advance(0.6)  # 4 has gone quiet (paused) longer than the failure timeout
    new = await store.register_leader(3)
    assert new == old + 1
    before = store.status()
    # The old leader can neither complete, renew nor dequeue; nothing changes.
    with pytest.raises(StaleEpoch, match=f"current epoch is {new}"):
        await complete(store, 4, old, taken[1].lease_id, "a")
    with pytest.raises(StaleEpoch):
        await store.renew(4, old, taken[1].lease_id, "a")
    with pytest.raises(StaleEpoch):
        await dequeue(store, 4, old, 0)
    after = store.status()
    assert (after.depth, after.executed, after.epoch) == (before.depth, before.executed, new)
    # The new leader gets the in-flight order at once.
    again = await dequeue(store, 3, new, 0)
    assert again is not None and again[0].order_id == "a"
    record, _ = await complete(store, 3, new, again[1].lease_id, "a")
    assert (record.executor, record.epoch) == (3, new)


async def test_a_lower_id_cannot_register_while_a_higher_leader_is_active(
    store: QueueStore, clock: FakeClock
) -> None:
    epoch = await store.register_leader(4)
    await dequeue(store, 4, epoch, 0)
    with pytest.raises(LeaderAlive):
        await store.register_leader(3)
    assert store.status().epoch == epoch
    assert await store.register_leader(4) == epoch + 1  # the same or a higher id may
    clock.advance(0.6)  # 4 silent longer than the failure timeout
    assert await store.register_leader(3) == epoch + 2


async def test_only_configured_replicas_may_register_dequeue_or_complete(
    db_path: Path, clock: FakeClock
) -> None:
    store = QueueStore(db_path, failure_timeout_s=0.5, replica_ids=[1, 2, 3, 4], clock=clock)
    await store.open()
    try:
        await enqueue(store, "a", items(1), "Ann")
        epoch = await store.register_leader(4)
        taken = await dequeue(store, 4, epoch, 0)
        assert taken is not None
        for foreign in (5, 2**31):
            with pytest.raises(UnknownReplica, match=f"replica {foreign} is not configured"):
                await store.register_leader(foreign)
            with pytest.raises(UnknownReplica):
                await dequeue(store, foreign, epoch, 0)
            with pytest.raises(UnknownReplica):
                await complete(store, foreign, epoch, taken[1].lease_id, "a")
        # The real leader never noticed.
        assert (store.status().epoch, store.state.leader_id) == (epoch, 4)
        record, _ = await complete(store, 4, epoch, taken[1].lease_id, "a")
        assert record.executor == 4
    finally:
        await store.close()


async def test_racing_registrations_cannot_both_pass_the_live_leader_check(
    store: QueueStore,
) -> None:
    four, three = await asyncio.gather(
        store.register_leader(4), store.register_leader(3), return_exceptions=True
    )
    assert four == 1
    assert isinstance(three, LeaderAlive)
    assert (store.status().epoch, store.state.leader_id) == (1, 4)


async def test_completion_is_idempotent(store: QueueStore) -> None:
    await enqueue(store, "a", items(1), "n")
    epoch = await store.register_leader(1)
    taken = await dequeue(store, 1, epoch, 0)
    assert taken is not None
    first, dup1 = await complete(store, 1, epoch, taken[1].lease_id, "a")
    second, dup2 = await complete(store, 1, epoch, taken[1].lease_id, "a")
    assert (dup1, dup2) == (False, True)
    assert first == second
    assert store.status().executed == 1
    with pytest.raises(UnknownOrder):
        await complete(store, 1, epoch, "x", "nope")


async def test_a_refused_write_whose_caller_gave_up_does_not_stop_the_queue(
    store: QueueStore,
) -> None:
    epoch = await store.register_leader(1)
    # A completion the database refuses (unknown order) whose RPC is cancelled
    # (deadline passed, client gone) before the batch commits.
    gone = asyncio.create_task(complete(store, 1, epoch, "x", "nope"))
    await asyncio.sleep(0)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    # The writer lives on: later writes are still committed and acknowledged.
    sequence, duplicate = await asyncio.wait_for(enqueue(store, "b", items(1), "n"), 2)
    assert sequence >= 1 and not duplicate
    assert store.disk.failed is None


async def test_an_enqueue_whose_caller_gave_up_is_still_delivered(store: QueueStore) -> None:
    epoch = await store.register_leader(1)
    gone = asyncio.create_task(enqueue(store, "a", items(1), "n"))
    await asyncio.sleep(0)  # handed to the group commit
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    # Its write commits all the same, and the order reaches memory with it.
    taken = await dequeue(store, 1, epoch, 2.0)
    assert taken is not None and taken[0].order_id == "a"


async def test_the_oldest_wait_is_the_earliest_orders_and_survives_a_reopen(
    db_path: Path, clock: FakeClock
) -> None:
    wall = Wall()
    store = QueueStore(db_path, clock=clock, wall_clock=wall)
    await store.open()
    assert store.oldest_wait_s() == 0.0
    await enqueue(store, "first", items(1), "n")
    wall.now += timedelta(seconds=30)
    await enqueue(store, "big", items(5), "n")  # served first, but arrived later
    wall.now += timedelta(seconds=10)
    assert store.oldest_wait_s() == 40.0
    await store.close()
    again = QueueStore(db_path, clock=clock, wall_clock=wall)
    await again.open()
    try:
        wall.now += timedelta(seconds=5)
        assert again.oldest_wait_s() == 45.0
        epoch = await again.register_leader(1)
        for _ in range(2):
            taken = await dequeue(again, 1, epoch, 0)
            assert taken is not None
            await complete(again, 1, epoch, taken[1].lease_id, taken[0].order_id)
        assert again.oldest_wait_s() == 0.0
    finally:
        await again.close()


async def test_everything_acknowledged_survives_a_reopen(
    store: QueueStore, db_path: Path, clock: FakeClock
) -> None:
    for i in range(5):
        await enqueue(store, f"o{i}", items(i + 1), "n")
    epoch = await store.register_leader(2)
    taken = await dequeue(store, 2, epoch, 0)
    assert taken is not None and taken[0].order_id == "o4"
    await complete(store, 2, epoch, taken[1].lease_id, "o4")
    leased = await dequeue(store, 2, epoch, 0)  # a lease a restart voids
    assert leased is not None
    await store.close()

    again = await reopen(db_path, clock)
    try:
        s = again.status()
        assert (s.depth, s.executed, s.epoch, s.leader_id, s.leased) == (4, 1, epoch, 2, 0)
        assert [o.order_id for o in s.next] == ["o3", "o2", "o1", "o0"]
        view = await again.get_order("o4")
        assert view.state == "executed" and view.execution is not None
        assert view.execution.epoch == epoch
        assert await enqueue(again, "o0", items(1), "n") == (1, True)
        assert await enqueue(again, "new", items(1), "n") == (6, False)
        assert await again.register_leader(3) == epoch + 1  # never reuses an epoch
    finally:
        await again.close()


async def test_long_poll_wakes_when_an_order_arrives(store: QueueStore) -> None:
    epoch = await store.register_leader(1)
    waiting = asyncio.create_task(dequeue(store, 1, epoch, 5.0))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await enqueue(store, "a", items(1), "n")
    taken = await asyncio.wait_for(waiting, 2.0)
    assert taken is not None and taken[0].order_id == "a"
    assert await dequeue(store, 1, epoch, 0.01) is None  # empty: waits, then nothing


async def test_a_waiting_dequeue_of_a_deposed_leader_is_refused(store: QueueStore) -> None:
    epoch = await store.register_leader(1)
    waiting = asyncio.create_task(dequeue(store, 1, epoch, 5.0))
    await asyncio.sleep(0.02)
    await store.register_leader(2)
    with pytest.raises(StaleEpoch):
        await asyncio.wait_for(waiting, 2.0)


async def test_concurrent_writes_share_commits(store: QueueStore) -> None:
    results = await asyncio.gather(
        *(enqueue(store, f"o{i}", items(1 + i % 5), "n") for i in range(200))
    )
    assert sorted(seq for seq, _ in results) == list(range(1, 201))
    assert store.disk.commits < 200


async def test_watchers_see_every_committed_execution(store: QueueStore) -> None:
    for i in range(3):
        await enqueue(store, f"o{i}", items(1), "n")
    epoch = await store.register_leader(1)
    async with store.subscribe() as feed:
        for _ in range(3):
            taken = await dequeue(store, 1, epoch, 0)
            assert taken is not None
            await complete(store, 1, epoch, taken[1].lease_id, taken[0].order_id)
            await complete(store, 1, epoch, taken[1].lease_id, taken[0].order_id)  # dup
        seen = [(await feed.get()) for _ in range(3)]
        assert feed.empty()
    assert [r.order_id for r in seen if r] == ["o0", "o1", "o2"]
    assert [r.sequence for r in seen if r] == [1, 2, 3]


async def test_a_failed_commit_is_fatal(db_path: Path, clock: FakeClock) -> None:
    failures: list[BaseException] = []
    s = QueueStore(db_path, clock=clock, on_fatal=failures.append)
    await s.open()
    assert s.disk.db is not None
    s.disk.db.conn.close()  # the disk goes away under the writer
    with pytest.raises(StorageFailure):
        await enqueue(s, "a", items(1), "n")
    assert failures
    with pytest.raises(StorageFailure):
        await enqueue(s, "b", items(1), "n")  # nothing more is acknowledged
    s.disk.db = None
    await s.close()


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("enqueue"), st.integers(min_value=1, max_value=5)),
        st.tuples(st.just("dequeue"), st.just(0)),
        st.tuples(st.just("restart"), st.just(0)),
    ),
    max_size=30,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS)
def test_any_interleaving_matches_the_model_across_restarts(ops: list[tuple[str, int]]) -> None:
    """Enqueues, dequeues (executing each order) and restarts of the real store:
    every dequeue hands out the model's smallest (-books, sequence)."""

    async def scenario(path: Path) -> None:
        clock = FakeClock()
        store = await reopen(path, clock)
        model: dict[str, tuple[int, int]] = {}
        sequence = 0
        try:
            for op, books in ops:
                if op == "enqueue":
                    sequence += 1
                    oid = f"o{sequence}"
                    assert await enqueue(store, oid, items(books), "n") == (sequence, False)
                    model[oid] = (-books, sequence)
                elif op == "dequeue":
                    epoch = await store.register_leader(1)
                    taken = await dequeue(store, 1, epoch, 0)
                    if not model:
                        assert taken is None
                        continue
                    assert taken is not None
                    expected = min(model, key=lambda o: model[o])
                    assert taken[0].order_id == expected
                    await complete(store, 1, epoch, taken[1].lease_id, expected)
                    del model[expected]
                else:
                    await store.close()
                    store = await reopen(path, clock)
                assert store.status().depth == len(model)
        finally:
            await store.close()

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(Path(tmp) / "queue.db"))
