"""SQLite opened for durability: WAL, `synchronous=FULL`, a busy timeout and
autocommit mode (callers open write transactions with `BEGIN IMMEDIATE`).

With `synchronous=NORMAL` a committed transaction can roll back after a power
loss; FULL fsyncs the WAL at every commit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


class NotDurable(Exception):
    """The file could not be opened in WAL mode."""


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=5.0)
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        conn.close()
        raise NotDurable(f"{path}: could not switch to WAL mode (got {mode})")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def each_in_savepoint(
    conn: sqlite3.Connection, writes: Iterable[Callable[[], Any]], refusal: type[Exception]
) -> list[Any]:
    """Run `writes` inside the open transaction, each in a savepoint: each one's
    result, or the `refusal` it raised with its own changes undone. A database
    error propagates (the caller rolls the whole transaction back)."""
    results: list[Any] = []
    for write in writes:
        conn.execute("SAVEPOINT op")
        try:
            results.append(write())
        except sqlite3.Error:
            raise
        except refusal as exc:
            conn.execute("ROLLBACK TO op")
            results.append(exc)
        conn.execute("RELEASE op")
    return results
