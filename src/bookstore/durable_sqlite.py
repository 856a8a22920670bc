"""SQLite opened for durability: WAL, `synchronous=FULL`, a busy timeout and
autocommit mode (callers open write transactions with `BEGIN IMMEDIATE`).

With `synchronous=NORMAL` a committed transaction can roll back after a power
loss; FULL fsyncs the WAL at every commit.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


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
