"""The payment ledger: tokens and transactions in SQLite, durable before any answer.

WAL mode with `synchronous=FULL`, every write in a `BEGIN IMMEDIATE`
transaction committed before the caller answers, a busy timeout. Writes that
wait together may share one transaction (`run_batch`: group commit, one fsync;
each write in a savepoint of its own, so a refused one changes nothing). A token is
sealed, not written (`tokens.py`, under the key kept here); an authorize records its
card's brand, last four, expiry and test behaviour in a token row, in the prepare's
transaction: never the number, never the CVV. A transaction row is a two-phase-commit
participant's record (`bookstore.commitment.participant`, which holds the rules); the highest
coordinator epoch seen is kept in `meta`.

Not thread-safe: the service calls it from one thread at a time (its database thread).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bookstore import durable_sqlite
from bookstore.commitment.participant import (
    Decision,
    Participant,
    Record,
    State,
    TxnError,
    Vote,
)
from bookstore.payment.cards import DECLINE_REASONS, Behaviour, CardInfo
from bookstore.payment.tokens import Sealer, new_key
from bookstore.timestamps import utc_iso

T = TypeVar("T")
CURRENCY = "EUR"
IN_DOUBT_LISTED = 100

SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    token TEXT PRIMARY KEY,
    brand TEXT NOT NULL,
    last4 TEXT NOT NULL,
    expiration TEXT NOT NULL,
    behaviour TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS transactions (
    txn_id TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('prepared', 'committed', 'aborted')),
    epoch INTEGER NOT NULL,
    token TEXT,
    amount_cents INTEGER,
    currency TEXT,
    reason TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS transactions_state ON transactions (state, updated_at);
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    epoch INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (id, epoch) VALUES (1, 0);
CREATE TABLE IF NOT EXISTS token_key (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    key BLOB NOT NULL
);
"""


class UnknownToken(TxnError):
    code = "UNKNOWN_TOKEN"


class StorageFailure(Exception):
    """The ledger could not make a write durable."""


@dataclass(frozen=True)
class Authorization:
    """A payment participant's request: what a txn id is bound to."""

    token: str
    amount_cents: int
    currency: str


@dataclass(frozen=True)
class TxnView:
    record: Record[Authorization]
    updated_at: str
    brand: str = ""
    last4: str = ""


@dataclass(frozen=True)
class LedgerStatus:
    captured_cents: int
    counts: dict[State, int]
    in_doubt: list[TxnView]
    epoch: int
    tokens: int


class _Rows:
    """The participant's store over the ledger's connection (inside a transaction)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def get(self, txn_id: str) -> Record[Authorization] | None:
        row = self.conn.execute(
            "SELECT state, epoch, token, amount_cents, currency, reason FROM transactions"
            " WHERE txn_id = ?",
            (txn_id,),
        ).fetchone()
        if row is None:
            return None
        state, epoch, token, amount, currency, reason = row
        request = None if token is None else Authorization(token, amount, currency)
        return Record(txn_id, State(state), epoch, request, reason)

    def put(self, record: Record[Authorization]) -> None:
        r = record.request
        self.conn.execute(
            "INSERT OR REPLACE INTO transactions (txn_id, state, epoch, token, amount_cents,"
            " currency, reason, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.txn_id,
                record.state.value,
                record.epoch,
                r and r.token,
                r and r.amount_cents,
                r and r.currency,
                record.reason,
                utc_iso(),
            ),
        )

    def highest_epoch(self) -> int:
        return int(self.conn.execute("SELECT epoch FROM meta WHERE id = 1").fetchone()[0])

    def set_highest_epoch(self, epoch: int) -> None:
        self.conn.execute("UPDATE meta SET epoch = ? WHERE id = 1", (epoch,))


class Ledger:
    def __init__(self, path: Path) -> None:
        try:
            self.conn = durable_sqlite.connect(path)
        except durable_sqlite.NotDurable as exc:
            raise StorageFailure(str(exc)) from exc
        self.conn.executescript(SCHEMA)
        self.rows = _Rows(self.conn)
        self.participant: Participant[Authorization] = Participant(self.rows)
        self._batching = False  # inside run_batch: writes join its transaction
        self.sealer = Sealer(self._token_key())

    def close(self) -> None:
        self.conn.close()

    def _token_key(self) -> bytes:
        """The key tokens are sealed under: made on the first start, durable before use."""
        self._write(
            lambda: self.conn.execute(
                "INSERT OR IGNORE INTO token_key (id, key) VALUES (1, ?)", (new_key(),)
            )
        )
        return bytes(self.conn.execute("SELECT key FROM token_key WHERE id = 1").fetchone()[0])

    def _write(self, fn: Callable[[], T]) -> T:
        """Run `fn` in one transaction: committed (fsynced) or, on any error, undone.
        A database error is a StorageFailure (the service stops on it)."""
        if self._batching:
            return fn()  # run_batch holds the transaction and this write's savepoint
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            result = fn()
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise StorageFailure(f"write failed: {exc}") from exc
        except BaseException:
            self._rollback()
            raise
        return result

    def run_batch(self, writes: list[Callable[[], Any]]) -> list[Any]:
        """Run `writes` (calls of the write methods) in one transaction: each one's
        result, or the error it raised (its own changes undone). A database error
        undoes everything and is a StorageFailure."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            self._batching = True
            results = durable_sqlite.each_in_savepoint(self.conn, writes, Exception)
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise StorageFailure(f"write failed: {exc}") from exc
        finally:
            self._batching = False
        return results

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")

    # -- tokens ---------------------------------------------------------------

    def tokenize(self, card: CardInfo) -> str:
        """A sealed token: no write, no I/O (so any thread may call it)."""
        return self.sealer.seal(card)

    def card(self, token: str) -> CardInfo:
        """The card of a sealed token, or of a token row (those written before tokens
        were sealed); UnknownToken otherwise."""
        if (card := self.sealer.open(token)) is not None:
            return card
        row = self.conn.execute(
            "SELECT brand, last4, expiration, behaviour FROM tokens WHERE token = ?", (token,)
        ).fetchone()
        if row is None:
            raise UnknownToken("no such token")
        brand, last4, expiration, behaviour = row
        return CardInfo(brand, last4, expiration, Behaviour(behaviour))

    def _keep_card(self, token: str, card: CardInfo) -> None:
        """The token row of an authorized card (its kept part: the cluster view shows it)."""
        self.conn.execute(
            "INSERT OR IGNORE INTO tokens (token, brand, last4, expiration, behaviour,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (token, card.brand, card.last4, card.expiration, card.behaviour.value, utc_iso()),
        )

    # -- the participant ---------------------------------------------------------

    def authorize(self, txn_id: str, request: Authorization, epoch: int) -> Vote:
        """Prepare: the card's test behaviour votes; durable before the answer."""

        def vote(auth: Authorization) -> str:
            return DECLINE_REASONS.get(self.card(auth.token).behaviour, "")

        def prepare() -> Vote:
            card = self.card(request.token)  # an unknown token changes nothing, not even the epoch
            voted = self.participant.prepare(txn_id, epoch, request, vote)
            self._keep_card(request.token, card)
            return voted

        return self._write(prepare)

    def capture(self, txn_id: str, epoch: int) -> Record[Authorization]:
        return self._write(lambda: self.participant.commit(txn_id, epoch))

    def void(self, txn_id: str, epoch: int, reason: str) -> Record[Authorization]:
        return self._write(lambda: self.participant.abort(txn_id, epoch, reason or "voided"))

    def resolve(self, txn_id: str, decision: Decision | None) -> Record[Authorization] | None:
        """Apply the coordinator log's decision to a prepared txn (None: keep waiting)."""
        return self._write(lambda: self.participant.resolve(txn_id, decision))

    # -- reads ---------------------------------------------------------------------

    def transaction(self, txn_id: str) -> TxnView | None:
        record = self.rows.get(txn_id)
        return None if record is None else self._view(record)

    def _view(self, record: Record[Authorization]) -> TxnView:
        row = self.conn.execute(
            "SELECT t.updated_at, k.brand, k.last4 FROM transactions t"
            " LEFT JOIN tokens k ON k.token = t.token WHERE t.txn_id = ?",
            (record.txn_id,),
        ).fetchone()
        updated_at, brand, last4 = row
        return TxnView(record, updated_at, brand or "", last4 or "")

    def prepared(self) -> list[str]:
        """Txn ids in doubt (prepared, waiting for the decision), oldest first."""
        rows = self.conn.execute(
            "SELECT txn_id FROM transactions WHERE state = 'prepared' ORDER BY updated_at"
        ).fetchall()
        return [str(r[0]) for r in rows]

    def status(self) -> LedgerStatus:
        counts = dict.fromkeys(State, 0)
        for state, n in self.conn.execute(
            "SELECT state, COUNT(*) FROM transactions GROUP BY state"
        ).fetchall():
            counts[State(state)] = int(n)
        captured = self.conn.execute(
            "SELECT COALESCE(SUM(amount_cents), 0) FROM transactions WHERE state = 'committed'"
        ).fetchone()[0]
        in_doubt = []
        for txn_id in self.prepared()[:IN_DOUBT_LISTED]:
            record = self.rows.get(txn_id)
            if record is not None:
                in_doubt.append(self._view(record))
        tokens = self.conn.execute("SELECT COUNT(*) FROM tokens").fetchone()[0]
        return LedgerStatus(int(captured), counts, in_doubt, self.rows.highest_epoch(), tokens)
