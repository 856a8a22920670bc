"""The queue's SQLite file: the durable truth behind every acknowledgement.

WAL mode with `synchronous=FULL` (with NORMAL a committed transaction can
roll back after a power loss), write transactions opened with `BEGIN
IMMEDIATE`, a busy timeout, and a failure to commit treated as fatal by the
caller, with one exception: a full disk (DiskFull), which refuses the write
and changes nothing. Executed orders leave the file after a retention
(`sweep`); the counters keep sequence numbers growing past what was swept.
Card data never reaches this file: an order is its items (book id, title,
quantity), the customer's name, its priority, the payment service's opaque
token and the amount in cents.

All methods run on one thread (the store's writer thread).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bookstore import durable_sqlite
from bookstore.order_queue.state import (
    Completion,
    Item,
    Order,
    QueueError,
    StaleEpoch,
    UnknownOrder,
)
from bookstore.timestamps import utc_iso

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY,
    items TEXT NOT NULL,
    customer_name TEXT NOT NULL,
    books INTEGER NOT NULL,
    sequence INTEGER NOT NULL UNIQUE,
    state TEXT NOT NULL CHECK (state IN ('queued', 'executed')),
    enqueued_at TEXT NOT NULL,
    payment_token TEXT NOT NULL DEFAULT '',
    amount_cents INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS orders_queued ON orders (state, books DESC, sequence);
CREATE TABLE IF NOT EXISTS executions (
    order_id TEXT PRIMARY KEY REFERENCES orders (order_id),
    executor INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    sequence INTEGER NOT NULL UNIQUE,
    executed_at TEXT NOT NULL,
    outcome TEXT NOT NULL DEFAULT 'executed' CHECK (outcome IN ('executed', 'rejected')),
    reason TEXT NOT NULL DEFAULT '',
    amount_cents INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS executions_at ON executions (executed_at);
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    epoch INTEGER NOT NULL,
    leader_id INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (id, epoch, leader_id) VALUES (1, 0, 0);
-- High-water marks of what the retention sweep deleted.
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
-- The two-phase-commit coordinator log (decisions.py); no foreign key, so
-- retention may drop an order without touching its decision.
CREATE TABLE IF NOT EXISTS decisions (
    order_id TEXT PRIMARY KEY,
    decision TEXT NOT NULL CHECK (decision IN ('commit', 'abort')),
    epoch INTEGER NOT NULL,
    reason TEXT NOT NULL,
    decided_at TEXT NOT NULL,
    -- 1 once every participant acknowledged it (the leader's complete): the next
    -- leader's recovery finishes the decisions still at 0.
    finished INTEGER NOT NULL DEFAULT 0
);
"""
# After the columns are added (an earlier file has no `finished` before that).
INDEXES = """
CREATE INDEX IF NOT EXISTS decisions_unfinished ON decisions (decided_at) WHERE finished = 0;
"""


class StorageFailure(Exception):
    """The database could not make a write durable: the process must stop."""


class DiskFull(Exception):
    """No space for the write: it was refused and rolled back; retry later."""


SQLITE_FULL = 13  # primary result code; SQLite answers it when write() says ENOSPC


def _is_disk_full(exc: BaseException) -> bool:
    """A write that found no space, as opposed to any other I/O failure.

    Only this is safe to refuse and carry on from: SQLite's write() of the
    WAL frames failed before the commit frame, so the transaction never
    committed and the file holds exactly what was acknowledged before. An
    fsync that fails (SQLITE_IOERR_FSYNC, EIO) is different: the kernel may
    have dropped dirty pages it will never write again, so whether earlier
    data is on disk is unknown; that stays fatal (StorageFailure).
    """
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", 0) & 0xFF == SQLITE_FULL
    return isinstance(exc, OSError) and exc.errno == errno.ENOSPC


@dataclass(frozen=True)
class Execution:
    order_id: str
    executor: int
    epoch: int
    sequence: int
    executed_at: str
    outcome: str = "executed"  # "executed" | "rejected" (its transaction aborted)
    reason: str = ""  # rejected: why, for the customer
    amount_cents: int = 0  # executed: the amount captured


# Columns added after the first release: (table, column, definition).
_ADDED_COLUMNS = (
    ("orders", "payment_token", "TEXT NOT NULL DEFAULT ''"),
    ("orders", "amount_cents", "INTEGER NOT NULL DEFAULT 0"),
    ("executions", "outcome", "TEXT NOT NULL DEFAULT 'executed'"),
    ("executions", "reason", "TEXT NOT NULL DEFAULT ''"),
    ("executions", "amount_cents", "INTEGER NOT NULL DEFAULT 0"),
    ("decisions", "finished", "INTEGER NOT NULL DEFAULT 0"),
)
_EXECUTION_COLUMNS = (
    "order_id, executor, epoch, sequence, executed_at, outcome, reason, amount_cents"
)


@dataclass(frozen=True)
class Loaded:
    epoch: int
    leader_id: int
    queued: list[Order]
    executed: int


def wall_now() -> datetime:
    return datetime.now(UTC)


Op = Callable[["Database"], Any]


class Database:
    def __init__(self, path: Path, wall_clock: Callable[[], datetime] = wall_now) -> None:
        self.wall_clock = wall_clock
        # Autocommit mode: transactions are opened explicitly (BEGIN IMMEDIATE).
        try:
            self.conn = durable_sqlite.connect(path)
        except durable_sqlite.NotDurable as exc:
            raise StorageFailure(str(exc)) from exc
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.executescript(SCHEMA)
        self._add_columns()
        self.epoch, self.leader_id = self.conn.execute(
            "SELECT epoch, leader_id FROM meta WHERE id = 1"
        ).fetchone()
        self.next_sequence = 1 + max(
            self._scalar("SELECT COALESCE(MAX(sequence), 0) FROM orders"),
            self._counter("order_sequence"),
        )
        self.next_execution = 1 + max(
            self._scalar("SELECT COALESCE(MAX(sequence), 0) FROM executions"),
            self._counter("execution_sequence"),
        )

    def _add_columns(self) -> None:
        """Bring a file of an earlier release up to the current schema."""
        for table, column, definition in _ADDED_COLUMNS:
            names = {row[1] for row in self.conn.execute(f"PRAGMA table_info({table})")}
            if column not in names:
                self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
                if column == "finished":  # only a queued order's decision is due
                    self.conn.execute(
                        "UPDATE decisions SET finished = 1 WHERE order_id NOT IN"
                        " (SELECT order_id FROM orders WHERE state = 'queued')"
                    )
        self.conn.executescript(INDEXES)

    def _scalar(self, sql: str, *args: object) -> int:
        return int(self.conn.execute(sql, args).fetchone()[0])

    def _counter(self, name: str) -> int:
        return self._scalar("SELECT COALESCE(MAX(value), 0) FROM counters WHERE name = ?", name)

    def _set_counter(self, name: str, value: int) -> None:
        self.conn.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = MAX(value, excluded.value)",
            (name, value),
        )

    def close(self) -> None:
        self.conn.close()

    def load(self) -> Loaded:
        rows = self.conn.execute(
            "SELECT order_id, items, customer_name, books, sequence, payment_token, amount_cents,"
            " enqueued_at FROM orders WHERE state = 'queued' ORDER BY sequence"
        ).fetchall()
        queued = [
            Order(oid, _items_from_json(items), name, books, seq, 0, token, amount, "", _unix(at))
            for oid, items, name, books, seq, token, amount, at in rows
        ]
        executed = self._scalar("SELECT COUNT(*) FROM executions") + self._counter("swept")
        return Loaded(self.epoch, self.leader_id, queued, executed)

    def run_batch(self, ops: list[Op]) -> list[Any]:
        """Run `ops` in one transaction (one fsync); each result or QueueError.

        A QueueError undoes only its own op (a savepoint); any other failure
        rolls back everything and raises DiskFull (no space: nothing changed,
        the caller may go on) or StorageFailure (fatal).
        """
        saved = (self.epoch, self.leader_id, self.next_sequence, self.next_execution)
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            writes = (functools.partial(op, self) for op in ops)
            results = durable_sqlite.each_in_savepoint(self.conn, writes, QueueError)
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self.epoch, self.leader_id, self.next_sequence, self.next_execution = saved
            if self.conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
            if _is_disk_full(exc):
                raise DiskFull(f"no space left for the queue's database: {exc}") from exc
            raise StorageFailure(f"commit failed: {exc}") from exc
        return results

    # -- operations (called inside run_batch) --------------------------------

    def enqueue(self, order: Order) -> tuple[int, bool]:
        """Insert the order unless its id is known: (sequence, duplicate)."""
        row = self.conn.execute(
            "SELECT sequence FROM orders WHERE order_id = ?", (order.order_id,)
        ).fetchone()
        if row is not None:
            return int(row[0]), True
        sequence = self.next_sequence
        self.conn.execute(
            "INSERT INTO orders (order_id, items, customer_name, books, sequence, state,"
            " enqueued_at, payment_token, amount_cents) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?)",
            (
                order.order_id,
                _items_to_json(order.items),
                order.customer_name,
                order.books,
                sequence,
                utc_iso(order.enqueued_at),
                order.payment_token,
                order.amount_cents,
            ),
        )
        self.next_sequence += 1
        return sequence, False

    def register(self, replica_id: int) -> int:
        self.conn.execute(
            "UPDATE meta SET epoch = epoch + 1, leader_id = ? WHERE id = 1", (replica_id,)
        )
        self.epoch += 1
        self.leader_id = replica_id
        return int(self.epoch)

    def complete(self, c: Completion) -> tuple[Execution, bool, bool]:
        """The order is finished: (its execution, duplicate, created).

        An order with a logged decision got its execution with the decision
        (`record_execution`); completing it marks the decision finished (every
        participant acknowledged it). An order without one (no payment) gets its
        execution here. `duplicate`: it was finished before; `created`: its
        execution was recorded by this call."""
        if c.epoch != self.epoch or c.replica_id != self.leader_id:
            raise StaleEpoch(f"current epoch is {self.epoch}")
        record = self.execution(c.order_id)
        created = record is None
        if record is None:
            record = self.record_execution(
                c.order_id, c.replica_id, c.epoch, c.outcome, c.reason, c.amount_cents
            )
        finished = self.conn.execute(
            "UPDATE decisions SET finished = 1 WHERE order_id = ? AND finished = 0", (c.order_id,)
        ).rowcount
        return record, not (created or finished), created

    def record_execution(
        self,
        order_id: str,
        replica_id: int,
        epoch: int,
        outcome: str = "executed",
        reason: str = "",
        amount_cents: int = 0,
    ) -> Execution:
        """Record the order's execution and mark it executed (it leaves the queue).

        An executed order's amount defaults to the one it was enqueued with."""
        row = self.conn.execute(
            "SELECT amount_cents FROM orders WHERE order_id = ?", (order_id,)
        ).fetchone()
        if row is None:
            raise UnknownOrder(f"no order {order_id}")
        executed = outcome == "executed"
        record = Execution(
            order_id,
            replica_id,
            epoch,
            self.next_execution,
            utc_iso(self.wall_clock().timestamp()),
            outcome,
            "" if executed else reason,
            (amount_cents or int(row[0])) if executed else 0,
        )
        self.conn.execute(
            f"INSERT INTO executions ({_EXECUTION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                order_id,
                replica_id,
                epoch,
                record.sequence,
                record.executed_at,
                record.outcome,
                record.reason,
                record.amount_cents,
            ),
        )
        self.conn.execute("UPDATE orders SET state = 'executed' WHERE order_id = ?", (order_id,))
        self.next_execution += 1
        return record

    def sweep(self, executed_before: str, limit: int) -> int:
        """Delete up to `limit` orders executed before `executed_before` (RFC 3339,
        UTC, the format of `executed_at`, so text order is time order); never one
        whose decision is not finished (the next leader still needs it)."""
        ids = [
            row[0]
            for row in self.conn.execute(
                "SELECT e.order_id FROM executions e LEFT JOIN decisions d"
                " ON d.order_id = e.order_id"
                " WHERE e.executed_at < ? AND COALESCE(d.finished, 1) = 1 LIMIT ?",
                (executed_before, limit),
            )
        ]
        for order_id in ids:
            self.conn.execute("DELETE FROM executions WHERE order_id = ?", (order_id,))
            self.conn.execute("DELETE FROM orders WHERE order_id = ?", (order_id,))
        if ids:
            # What is deleted may hold the highest numbers: keep them counted.
            self._set_counter("order_sequence", self.next_sequence - 1)
            self._set_counter("execution_sequence", self.next_execution - 1)
            self._set_counter("swept", self._counter("swept") + len(ids))
        return len(ids)

    # -- reads ----------------------------------------------------------------

    def execution(self, order_id: str) -> Execution | None:
        row = self.conn.execute(
            f"SELECT {_EXECUTION_COLUMNS} FROM executions WHERE order_id = ?",
            (order_id,),
        ).fetchone()
        return None if row is None else Execution(*row)

    def order_row(self, order_id: str) -> tuple[int, int, str] | None:
        """(books, sequence, state) of a known order."""
        row = self.conn.execute(
            "SELECT books, sequence, state FROM orders WHERE order_id = ?", (order_id,)
        ).fetchone()
        return None if row is None else (int(row[0]), int(row[1]), str(row[2]))


def _unix(text: str) -> float:
    """Seconds since the epoch of a `utc_iso` timestamp."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _items_to_json(items: tuple[Item, ...]) -> str:
    return json.dumps(
        [{"bookId": i.book_id, "title": i.title, "quantity": i.quantity} for i in items]
    )


def _items_from_json(text: str) -> tuple[Item, ...]:
    return tuple(Item(d["bookId"], d["title"], int(d["quantity"])) for d in json.loads(text))
