"""The two-phase-commit coordinator log, kept in the queue's database.

The leader executor coordinates each order's transaction (txn id = order id)
and logs its decision here before it sends any commit or abort, so that the
next leader finds it. Rules:

- the epoch must be the queue's current one (a deposed leader's decision is
  refused with STALE_EPOCH; an epoch never granted is a BAD_REQUEST);
- the first decision logged for an order wins and is immutable: logging
  again, whatever the decision, answers the logged one (idempotent);
- the order must be known to the queue (UNKNOWN_ORDER);
- the decision is the order's commit point: the first one logged also records
  the order's execution in the same transaction (commit: executed, with the
  amount to capture; abort: rejected, with the customer's reason), so the
  order leaves the queue and its customer is answered once it is on disk;
- a decision stays pending (`pending`) until the leader completes the order,
  once every participant acknowledged it (`finished`): the next leader's
  recovery finishes the pending ones.

The writes run inside `Database.run_batch` (group commit, durable before the
reply); the reads on the database thread. The store checks a decision's epoch
and its form against its memory first (`QueueState.check`); `log` checks it again
against the disk, inside the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from bookstore.order_queue.db import Database, Execution
from bookstore.order_queue.state import BadRequest, StaleEpoch, UnknownOrder
from bookstore.timestamps import utc_iso

MAX_LISTED = 100
_COLUMNS = "order_id, decision, epoch, reason, decided_at"


@dataclass(frozen=True)
class LoggedDecision:
    order_id: str
    decision: str  # "commit" | "abort"
    epoch: int
    reason: str
    decided_at: str


@dataclass(frozen=True)
class Decided:
    """A log_decision's answer: the logged decision, and the execution recorded with
    it (None when the decision was logged before, or the order was already executed)."""

    logged: LoggedDecision
    execution: Execution | None = None


def log(
    db: Database,
    order_id: str,
    decision: str,
    epoch: int,
    reason: str,
    amount_cents: int = 0,
    customer_reason: str = "",
) -> Decided:
    """Log the decision unless one is logged, and record the order's execution with
    it; the logged decision either way."""
    if epoch < db.epoch:
        raise StaleEpoch(f"current epoch is {db.epoch}")
    if epoch > db.epoch:
        raise BadRequest(f"epoch {epoch} was never granted (current epoch is {db.epoch})")
    existing = get(db, order_id)
    if existing is not None:
        return Decided(existing)
    if db.order_row(order_id) is None:
        raise UnknownOrder(f"no order {order_id}")
    logged = LoggedDecision(order_id, decision, epoch, reason, utc_iso())
    db.conn.execute(
        f"INSERT INTO decisions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
        (logged.order_id, logged.decision, logged.epoch, logged.reason, logged.decided_at),
    )
    if db.execution(order_id) is not None:
        return Decided(logged)
    commit = decision == "commit"
    execution = db.record_execution(
        order_id,
        db.leader_id,
        epoch,
        "executed" if commit else "rejected",
        "" if commit else (customer_reason or reason),
        amount_cents if commit else 0,
    )
    return Decided(logged, execution)


def get(db: Database, order_id: str) -> LoggedDecision | None:
    row = db.conn.execute(
        f"SELECT {_COLUMNS} FROM decisions WHERE order_id = ?", (order_id,)
    ).fetchone()
    return None if row is None else LoggedDecision(*row)


def pending(db: Database, limit: int) -> list[LoggedDecision]:
    """Decisions not yet finished (a participant may still be in doubt), oldest first."""
    return _listed(db, "WHERE finished = 0 ORDER BY decided_at", limit)


def recent(db: Database, limit: int) -> list[LoggedDecision]:
    return _listed(db, "ORDER BY decided_at DESC, rowid DESC", limit)


def _listed(db: Database, where_order: str, limit: int) -> list[LoggedDecision]:
    query = f"SELECT {_COLUMNS} FROM decisions {where_order} LIMIT ?"
    rows = db.conn.execute(query, (min(limit, MAX_LISTED),)).fetchall()
    return [LoggedDecision(*row) for row in rows]
