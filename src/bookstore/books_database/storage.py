"""One replica's SQLite file: its view, vote, log and applied stock.

The applied stock (with its txns and answers) is the snapshot of the log: the
log table holds only the entries after `snap_index` (replication rule 8), so
the file, and a restart's reading of it, grow with the stock, not with history.

WAL mode with `synchronous=FULL`, writes in `BEGIN IMMEDIATE` transactions,
and any failure to commit is fatal (`StorageFailure`: the process stops
rather than answer from a state it could not make durable). The adapter
merges every Output of one loop turn into one `write` (group commit: one
fsync for all of them). The stock table is seeded from the catalogue on
first start. Card data never reaches this file.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bookstore import durable_sqlite
from bookstore.books_database.messages import Entry, Output
from bookstore.books_database.stock import BookRow, Op, Result, StockMachine, Txn
from bookstore.catalogue import Catalogue
from bookstore.commitment.participant import State

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    view INTEGER NOT NULL,
    voted_for INTEGER NOT NULL,
    applied INTEGER NOT NULL,
    max_epoch INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (id, view, voted_for, applied, max_epoch) VALUES (1, 0, 0, 0, 0);
CREATE TABLE IF NOT EXISTS log (
    idx INTEGER PRIMARY KEY,
    view INTEGER NOT NULL,
    op TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS stock (
    book_id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    stock INTEGER NOT NULL CHECK (stock >= 0),
    reserved INTEGER NOT NULL CHECK (reserved >= 0 AND reserved <= stock)
);
CREATE TABLE IF NOT EXISTS txns (
    txn_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    items TEXT NOT NULL,  -- JSON lines; [] for a txn first seen as a release
    epoch INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS answers (
    request_id TEXT PRIMARY KEY,
    code TEXT NOT NULL,
    message TEXT NOT NULL,
    lacking TEXT NOT NULL  -- unused (a no vote's message names the titles): always []
);
"""
# Columns added since the first release, for files written by an earlier one.
_ADDED_COLUMNS = (
    ("txns", "epoch", "INTEGER NOT NULL DEFAULT 0"),
    ("txns", "reason", "TEXT NOT NULL DEFAULT ''"),
    ("meta", "snap_index", "INTEGER NOT NULL DEFAULT 0"),  # the log starts after it
    ("meta", "snap_view", "INTEGER NOT NULL DEFAULT 0"),  # the view of the entry there
)
# The txn states an earlier release wrote, as the participant's states.
_STATES = {"reserved": State.PREPARED, "released": State.ABORTED} | {s.value: s for s in State}


class StorageFailure(Exception):
    """The database could not make a write durable: the replica must stop."""


@dataclass(frozen=True)
class Loaded:
    view: int
    voted_for: int
    log: list[Entry]  # the entries after `snapshot`
    snapshot: tuple[int, int]  # (index, view) of the last entry compacted
    machine: StockMachine


def op_to_json(op: Op) -> str:
    return json.dumps(
        {"k": op.kind, "r": op.request_id, "t": op.txn_id, "e": op.epoch, "i": op.items}
    )


def op_from_json(text: str) -> Op:
    d = json.loads(text)
    items = tuple((str(b), int(q)) for b, q in d["i"])
    return Op(d["k"], d["r"], d["t"], int(d["e"]), items)


def _items(text: str) -> tuple[tuple[str, int], ...] | None:
    lines = tuple((str(b), int(q)) for b, q in json.loads(text))
    return lines or None  # a reservation has lines; none: first seen as a release


def seed_rows(catalogue: Catalogue, initial_stock: int | None) -> dict[str, BookRow]:
    """Every catalogue book with its own stock, or `initial_stock` for all of them."""
    return {
        b.book_id: BookRow(b.title, b.stock if initial_stock is None else initial_stock)
        for b in catalogue.all()
    }


class Storage:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.conn = durable_sqlite.connect(path)
        except durable_sqlite.NotDurable as exc:
            raise StorageFailure(str(exc)) from exc
        self.conn.executescript(SCHEMA)
        for table, column, definition in _ADDED_COLUMNS:
            names = {row[1] for row in self.conn.execute(f"PRAGMA table_info({table})")}
            if column not in names:
                self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")

    def close(self) -> None:
        self.conn.close()

    def load(self, seed: dict[str, BookRow]) -> Loaded:
        """Everything persisted; on first start the stock table is seeded with `seed`."""
        if self.conn.execute("SELECT COUNT(*) FROM stock").fetchone()[0] == 0:
            self._transaction(
                lambda: self.conn.executemany(
                    "INSERT INTO stock (book_id, title, stock, reserved) VALUES (?, ?, ?, 0)",
                    [(b, row.title, row.stock) for b, row in seed.items()],
                )
            )
        view, voted_for, applied, max_epoch, snap_index, snap_view = self.conn.execute(
            "SELECT view, voted_for, applied, max_epoch, snap_index, snap_view FROM meta"
        ).fetchone()
        books = {
            b: BookRow(title, stock, reserved)
            for b, title, stock, reserved in self.conn.execute("SELECT * FROM stock")
        }
        txns = {
            t: Txn(t, _STATES[state], epoch, _items(items), reason)
            for t, state, items, epoch, reason in self.conn.execute(
                "SELECT txn_id, state, items, epoch, reason FROM txns"
            )
        }
        rows = self.conn.execute("SELECT request_id, code, message FROM answers")
        answers = {r: Result(code, message) for r, code, message in rows}
        log = [
            Entry(v, op_from_json(op))
            for v, op in self.conn.execute(
                "SELECT view, op FROM log WHERE idx > ? ORDER BY idx", (snap_index,)
            )
        ]
        machine = StockMachine(books, txns, answers, max_epoch, applied)
        return Loaded(view, voted_for, log, (snap_index, snap_view), machine)

    def write(self, batch: Snapshot) -> None:
        """Make one loop turn's outputs durable in one transaction (one fsync)."""
        self._transaction(lambda: self._write(batch))

    def _write(self, b: Snapshot) -> None:
        c = self.conn
        if b.hard_state is not None:
            c.execute("UPDATE meta SET view = ?, voted_for = ? WHERE id = 1", b.hard_state)
        if b.installed is not None:  # a snapshot replaces everything
            for table in ("log", "stock", "txns", "answers"):
                c.execute(f"DELETE FROM {table}")
            c.executemany("INSERT INTO stock VALUES (?, ?, ?, ?)", b.installed)
        for start, entries in b.log_writes:
            c.execute("DELETE FROM log WHERE idx >= ?", (start,))
            c.executemany(
                "INSERT INTO log (idx, view, op) VALUES (?, ?, ?)",
                [(start + k, view, op) for k, (view, op) in enumerate(entries)],
            )
        if b.compacted is not None:
            c.execute("DELETE FROM log WHERE idx <= ?", (b.compacted[0],))
            c.execute("UPDATE meta SET snap_index = ?, snap_view = ? WHERE id = 1", b.compacted)
        c.executemany("UPDATE stock SET stock = ?, reserved = ? WHERE book_id = ?", b.books)
        c.executemany(
            "INSERT OR REPLACE INTO txns (txn_id, state, items, epoch, reason)"
            " VALUES (?, ?, ?, ?, ?)",
            b.txns,
        )
        c.executemany("INSERT OR IGNORE INTO answers VALUES (?, ?, ?, '[]')", b.answers)
        c.execute("UPDATE meta SET applied = ?, max_epoch = ? WHERE id = 1", b.applied)

    def _transaction(self, body: Callable[[], object]) -> None:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            body()
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self.conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
            raise StorageFailure(f"{self.path}: commit failed: {exc}") from exc


@dataclass(frozen=True)
class Snapshot:
    """An Output's durable part as plain rows, taken on the event loop before the write."""

    hard_state: tuple[int, int] | None
    installed: list[tuple[str, str, int, int]] | None  # a snapshot's stock: every row
    log_writes: list[tuple[int, list[tuple[int, str]]]]
    compacted: tuple[int, int] | None
    books: list[tuple[int, int, str]]
    txns: list[tuple[str, str, str, int, str]]
    answers: list[tuple[str, str, str]]
    applied: tuple[int, int]


def snapshot(out: Output, machine: StockMachine) -> Snapshot:
    def rows(entries: Iterable[Entry]) -> list[tuple[int, str]]:
        return [(e.view, op_to_json(e.op)) for e in entries]

    def txn_row(txn: Txn) -> tuple[str, str, str, int, str]:
        items = json.dumps(txn.request or ())
        return (txn.txn_id, txn.state.value, items, txn.epoch, txn.reason)

    ch, m = out.changes, machine
    if out.installed:  # every row, after the tables are emptied
        installed = [(b, r.title, r.stock, r.reserved) for b, r in m.books.items()]
        books: Iterable[str] = ()
        txns: Iterable[str] = m.txns
        answers: Mapping[str, Result] = m.answers
    else:
        installed, books, txns, answers = None, ch.books, ch.txns, ch.answers
    return Snapshot(
        hard_state=out.hard_state,
        installed=installed,
        log_writes=[(w.start, rows(w.entries)) for w in out.log_writes],
        compacted=out.compacted,
        books=[(m.books[b].stock, m.books[b].reserved, b) for b in sorted(books)],
        txns=[txn_row(m.txns[t]) for t in sorted(txns)],
        answers=[(r, answers[r].code, answers[r].message) for r in sorted(answers)],
        applied=(out.applied, m.max_epoch),
    )
