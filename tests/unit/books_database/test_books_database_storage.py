"""A replica's SQLite file: seeded once, everything an Output carries survives a
reopen, and a write that fails stops the replica."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from bookstore.books_database.driver import Driver
from bookstore.books_database.messages import Entry, LogWrite, Output
from bookstore.books_database.replication import Replica
from bookstore.books_database.stock import BookRow, Op, StockMachine
from bookstore.books_database.storage import (
    Snapshot,
    Storage,
    StorageFailure,
    seed_rows,
    snapshot,
)
from bookstore.catalogue import load_catalogue
from bookstore.commitment.participant import Record, State

SEED = {"b1": BookRow("Dune", 5), "b2": BookRow("Emma", 2)}


def test_the_stock_is_seeded_from_the_catalogue_or_one_initial_stock() -> None:
    catalogue = load_catalogue()
    own = seed_rows(catalogue, None)
    assert own["b001"].stock == catalogue.by_id("b001").stock  # type: ignore[union-attr]
    assert {row.stock for row in seed_rows(catalogue, 100_000).values()} == {100_000}


def test_view_vote_log_and_applied_state_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "books-database-1.sqlite3"
    storage = Storage(path)
    machine = storage.load(dict(SEED)).machine
    reserve = Op("reserve", "r:t1", "t1", 4, (("b1", 2),))
    entries = (Entry(1, Op("noop")), Entry(1, reserve), Entry(1, Op("noop")))
    machine.apply(1, entries[0].op)
    machine.apply(2, reserve)
    out = Output(hard_state=(1, 3), log_writes=[LogWrite(1, entries)])
    out.changes, out.applied = machine.take_changes(), machine.applied
    storage.write(snapshot(out, machine))
    # a later turn replaces the uncommitted tail
    tail = Output(log_writes=[LogWrite(3, (Entry(2, Op("noop")),))], applied=2)
    storage.write(snapshot(tail, machine))
    storage.close()

    again = Storage(path)
    loaded = again.load({"b1": BookRow("ignored", 99)})  # seeded only on first start
    assert (loaded.view, loaded.voted_for) == (1, 3)
    assert loaded.log == [entries[0], entries[1], Entry(2, Op("noop"))]
    m = loaded.machine
    assert (m.applied, m.max_epoch) == (2, 4)
    assert (m.books["b1"].stock, m.books["b1"].reserved, m.books["b2"].stock) == (5, 2, 2)
    assert m.txns["t1"] == machine.txns["t1"] and m.txns["t1"].request == (("b1", 2),)
    assert m.answers["r:t1"].ok
    assert m.digest() == machine.digest()
    again.close()


def test_a_file_of_an_earlier_release_loads_its_txns_as_the_participants(
    tmp_path: Path,
) -> None:
    path = tmp_path / "books-database-1.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE txns (txn_id TEXT PRIMARY KEY, state TEXT NOT NULL, items TEXT NOT NULL);"
        """INSERT INTO txns VALUES ('t1', 'reserved', '[["b1", 2]]'), ('t2', 'released', '[]'),
        ('t3', 'committed', '[["b2", 1]]');"""
    )
    old.close()
    storage = Storage(path)
    txns = storage.load(dict(SEED)).machine.txns
    storage.close()
    assert txns == {
        "t1": Record("t1", State.PREPARED, 0, (("b1", 2),)),
        "t2": Record("t2", State.ABORTED, 0, None),  # first seen as a release
        "t3": Record("t3", State.COMMITTED, 0, (("b2", 1),)),
    }


async def test_a_turn_whose_write_fails_stops_the_replica(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = Storage(tmp_path / "books-database-1.sqlite3")
    replica = Replica(1, [1], storage.load(dict(SEED)).machine)  # alone: it elects itself

    def broken(batch: Snapshot) -> None:
        raise StorageFailure("the disk went away")

    monkeypatch.setattr(storage, "write", broken)
    driver = Driver(replica, storage, {1: "127.0.0.1:9"}, tick_s=0.01)
    running = driver.start()
    try:
        # Its first durable turn (its vote for itself) fails: the replica stops.
        with pytest.raises(StorageFailure, match="went away"):
            await asyncio.wait_for(running, 15.0)
        with pytest.raises(StorageFailure):
            await driver.submit_many([Op("reserve", "r:t1", "t1", 1, (("b1", 1),))])
    finally:
        await driver.stop()
        storage.close()


def test_a_compacted_log_and_an_installed_snapshot_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "books-database-1.sqlite3"
    storage = Storage(path)
    machine = storage.load(dict(SEED)).machine
    entries = tuple(Entry(1, Op("set_stock", f"s{i}", items=(("b1", i),))) for i in range(1, 6))
    for index, entry in enumerate(entries, 1):
        machine.apply(index, entry.op)
    out = Output(log_writes=[LogWrite(1, entries)], compacted=(3, 1))
    out.changes, out.applied = machine.take_changes(), machine.applied
    storage.write(snapshot(out, machine))
    storage.close()
    storage = Storage(path)
    loaded = storage.load(dict(SEED))
    assert (loaded.snapshot, loaded.log) == ((3, 1), list(entries[3:]))
    assert loaded.machine.books["b1"].stock == 5 and loaded.machine.applied == 5

    # a snapshot from a primary replaces the stock, the txns, the answers and the log
    image = StockMachine({"b1": BookRow("Dune", 7), "b9": BookRow("New", 1)}).image()
    loaded.machine.restore(image, 40)
    installed = Output(installed=True, compacted=(40, 3), applied=40)
    storage.write(snapshot(installed, loaded.machine))
    storage.close()
    again = Storage(path)
    after = again.load(dict(SEED))
    assert (after.snapshot, after.log, after.machine.applied) == ((40, 3), [], 40)
    assert after.machine.digest() == loaded.machine.digest()
    assert not after.machine.answers and set(after.machine.books) == {"b1", "b9"}
    again.close()
