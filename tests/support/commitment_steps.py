"""One committed order's two-phase commit as a leader executor records it
(bookstore.commitment.trace): (kind, from, to, detail), in order. The fake data the
commitment view is tested with, by the HTTP layer's and the pages' tests."""

from __future__ import annotations

COMMITTED = (
    ("prepare", "coordinator", "books-database", ""),
    ("prepare", "coordinator", "payment", ""),
    ("vote", "books-database", "coordinator", "yes"),
    ("vote", "payment", "coordinator", "yes"),
    ("decision", "coordinator", "decision-log", "commit"),
    ("logged", "decision-log", "coordinator", "commit"),
    ("decision", "coordinator", "books-database", "commit"),
    ("decision", "coordinator", "payment", "commit"),
    ("ack", "books-database", "coordinator", ""),
    ("ack", "payment", "coordinator", ""),
)
