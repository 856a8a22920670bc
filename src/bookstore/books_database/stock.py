"""The stock of every book as a deterministic state machine: ops in log order.

Every replica applies the same committed ops in the same order and so holds
the same state. The stock is a two-phase-commit participant: reserve is its
prepare, commit its commit, release its abort, and the participant rules
(`bookstore.commitment.participant`, the same as payment's) decide each of
them: fencing by the coordinator's epoch, idempotent by txn id, a no vote
remembered, presumed abort, the same named refusals. Replication makes their
outcome durable: an op is answered only once it is committed on a majority
and applied, so a yes vote is on disk before it is given. What is left here:

1. available = stock - reserved; neither ever goes negative.
2. The vote on a new txn: yes when every line's copies are available (all or
   nothing); no, "out of stock: <the titles lacking copies>", otherwise.
3. The copies follow the txn's state: new -> PREPARED reserves them,
   PREPARED -> COMMITTED takes them out of stock, PREPARED -> ABORTED frees them.
4. A refused op changes nothing, not even the highest epoch: the rules' writes
   are staged and kept only when the op is accepted.
5. Idempotent by request id: a request id seen before gets its first answer
   back, whatever the op says now (a retry of a write whose outcome was unknown).
6. Malformed ops (unknown book, quantity <= 0 or over MAX_QUANTITY, empty
   items, a book twice) are refused and change nothing. The service checks
   the same before an op enters the log; this is the replicas' own check.

Every change is also recorded in `changes` so storage can write just the rows
that moved (drained by `take_changes`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from bookstore.commitment.participant import (
    BadRequest,
    Participant,
    Record,
    StaleEpoch,
    State,
    TxnError,
    UnknownTxn,
)

MAX_QUANTITY = 1_000_000  # per line and per set_stock: anything larger is a mistake
MAX_ITEMS = 100
MAX_ID = 200  # characters of a request or transaction id

OK = "OK"
# Named result codes (the gRPC layer maps them to status codes). The refusals of a
# reserve, commit or release are the participant's: STALE_EPOCH, ALREADY_ABORTED,
# ALREADY_COMMITTED, UNKNOWN_TXN, TXN_MISMATCH.
VOTED_NO = "VOTED_NO"  # a reserve's no vote (a normal answer): the message says why
BELOW_RESERVED = "BELOW_RESERVED"  # FAILED_PRECONDITION: set_stock under reserved copies
UNKNOWN_BOOK = "UNKNOWN_BOOK"  # NOT_FOUND
BAD_REQUEST = BadRequest.code  # INVALID_ARGUMENT
STALE_EPOCH = StaleEpoch.code
UNKNOWN_TXN = UnknownTxn.code
RELEASED = "released"  # the reason a release records

RESERVE, COMMIT, RELEASE, SET_STOCK, NOOP = "reserve", "commit", "release", "set_stock", "noop"
KINDS = (RESERVE, COMMIT, RELEASE, SET_STOCK, NOOP)


@dataclass(frozen=True)
class Op:
    """One write. `items`: (book id, quantity) for reserve, (book id, new stock) for set_stock."""

    kind: str
    request_id: str = ""
    txn_id: str = ""
    epoch: int = 0
    items: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class Result:
    code: str = OK
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.code == OK


@dataclass
class BookRow:
    title: str
    stock: int
    reserved: int = 0

    @property
    def available(self) -> int:
        return self.stock - self.reserved


# A reservation's request: (book id, quantity) lines, sorted by book id.
Items = tuple[tuple[str, int], ...]
Txn = Record[Items]  # request None: first seen as a release (presumed abort)


@dataclass
class Changes:
    books: set[str] = field(default_factory=set)
    txns: set[str] = field(default_factory=set)
    answers: dict[str, Result] = field(default_factory=dict)


NOOP_OP = Op(NOOP)


@dataclass(frozen=True)
class Image:
    """The whole applied state, as a snapshot carries it (replication's log compaction):
    every book (id, title, stock, reserved), every txn, every request's first answer."""

    books: tuple[tuple[str, str, int, int], ...]
    txns: tuple[Txn, ...]
    answers: tuple[tuple[str, Result], ...]
    max_epoch: int

    def split(self, rows: int) -> list[Image]:
        """In parts of at most `rows` txns and `rows` answers each (the books and the
        epoch in the first), so that no part outgrows a message."""
        count = max(1, -(-max(len(self.txns), len(self.answers)) // rows))
        return [
            Image(
                self.books if k == 0 else (),
                self.txns[k * rows : (k + 1) * rows],
                self.answers[k * rows : (k + 1) * rows],
                self.max_epoch,
            )
            for k in range(count)
        ]

    @staticmethod
    def join(parts: list[Image]) -> Image:
        return Image(
            tuple(b for p in parts for b in p.books),
            tuple(t for p in parts for t in p.txns),
            tuple(a for p in parts for a in p.answers),
            parts[0].max_epoch,
        )


class StockMachine:
    def __init__(
        self,
        books: dict[str, BookRow],
        txns: dict[str, Txn] | None = None,
        answers: dict[str, Result] | None = None,
        max_epoch: int = 0,
        applied: int = 0,
    ) -> None:
        self.books = books
        self.txns = txns if txns is not None else {}
        self.answers = answers if answers is not None else {}
        self.max_epoch = max_epoch
        self.applied = applied  # log index of the last op applied
        self.changes = Changes()

    def validate(self, op: Op) -> Result:
        """The checks that need no history: OK or why the op is malformed."""
        if op.kind not in KINDS:
            return Result(BAD_REQUEST, f"unknown operation {op.kind!r}")
        if op.kind in (RESERVE, COMMIT, RELEASE) and not 0 < len(op.txn_id) <= MAX_ID:
            return Result(BAD_REQUEST, f"txn_id must be 1..{MAX_ID} characters")
        if op.kind in (RESERVE, SET_STOCK):
            return self._validate_items(op)
        return Result()

    def _validate_items(self, op: Op) -> Result:
        if not op.items:
            return Result(BAD_REQUEST, "items must not be empty")
        if len(op.items) > MAX_ITEMS:
            return Result(BAD_REQUEST, f"at most {MAX_ITEMS} items")
        seen: set[str] = set()
        lowest = 1 if op.kind == RESERVE else 0
        for book_id, quantity in op.items:
            if book_id not in self.books:
                return Result(UNKNOWN_BOOK, f"no book with id {book_id!r}")
            if book_id in seen:
                return Result(BAD_REQUEST, f"book {book_id!r} appears twice")
            seen.add(book_id)
            if not lowest <= quantity <= MAX_QUANTITY:
                return Result(
                    BAD_REQUEST,
                    f"quantity of {book_id!r} is {quantity}: must be {lowest}..{MAX_QUANTITY}",
                )
        return Result()

    def apply(self, index: int, op: Op) -> Result:
        """Apply the op at log `index` (exactly once, in order) and return its answer."""
        if index != self.applied + 1:
            raise ValueError(f"applying index {index} after {self.applied}")
        self.applied = index
        if op.kind == NOOP:
            return Result()
        if op.request_id and op.request_id in self.answers:
            return self.answers[op.request_id]
        result = self._apply(op)
        if op.request_id:
            self.answers[op.request_id] = result
            self.changes.answers[op.request_id] = result
        return result

    def _apply(self, op: Op) -> Result:
        invalid = self.validate(op)
        if not invalid.ok:
            return invalid
        if op.kind == SET_STOCK:
            return self._set_stock(op)
        return self._txn_op(op)

    def _set_stock(self, op: Op) -> Result:
        for book_id, stock in op.items:
            if stock < self.books[book_id].reserved:
                row = self.books[book_id]
                return Result(
                    BELOW_RESERVED,
                    f"{row.title!r} has {row.reserved} copies reserved; stock {stock} is lower",
                )
        for book_id, stock in op.items:
            self.books[book_id].stock = stock
            self.changes.books.add(book_id)
        return Result()

    def _txn_op(self, op: Op) -> Result:
        """A reserve, commit or release, as the participant rules decide it (rule 4:
        their writes are staged, and kept only if the op is not refused)."""
        staged = _Staged(self.txns, self.max_epoch)
        rules = Participant(staged)
        try:
            if op.kind == RESERVE:
                vote = rules.prepare(op.txn_id, op.epoch, tuple(sorted(op.items)), self._vote)
            elif op.kind == COMMIT:
                rules.commit(op.txn_id, op.epoch)
            else:
                rules.abort(op.txn_id, op.epoch, RELEASED)
        except TxnError as refused:
            return Result(refused.code, refused.message)
        self.max_epoch = staged.epoch
        for txn in staged.written.values():
            self._follow(self.txns.get(txn.txn_id), txn)
            self.txns[txn.txn_id] = txn
            self.changes.txns.add(txn.txn_id)
        if op.kind == RESERVE and not vote.yes:
            return Result(VOTED_NO, vote.reason)
        return Result()

    def _vote(self, items: Items) -> str:
        """Rule 2: "" for yes, else why not."""
        lacking = [self.books[b].title for b, q in items if self.books[b].available < q]
        return "out of stock: " + ", ".join(lacking) if lacking else ""

    def _follow(self, before: Txn | None, after: Txn) -> None:
        """Rule 3: the copies follow the txn's new state."""
        was = before.state if before is not None else None
        if was is None and after.state is State.PREPARED:
            for book_id, quantity in after.request or ():
                self.books[book_id].reserved += quantity
                self.changes.books.add(book_id)
        elif was is State.PREPARED and after.state is not State.PREPARED:
            for book_id, quantity in after.request or ():
                row = self.books[book_id]
                row.reserved -= quantity
                if after.state is State.COMMITTED:
                    row.stock -= quantity
                self.changes.books.add(book_id)

    def image(self) -> Image:
        """A copy of the applied state (at `applied`)."""
        return Image(
            tuple((b, r.title, r.stock, r.reserved) for b, r in sorted(self.books.items())),
            tuple(self.txns.values()),
            tuple(self.answers.items()),
            self.max_epoch,
        )

    def restore(self, image: Image, applied: int) -> None:
        """Replace the whole state by a snapshot's, taken at log index `applied`."""
        self.books = {
            b: BookRow(title, stock, reserved) for b, title, stock, reserved in image.books
        }
        self.txns = {t.txn_id: t for t in image.txns}
        self.answers = dict(image.answers)
        self.max_epoch = image.max_epoch
        self.applied = applied
        self.changes = Changes()

    def take_changes(self) -> Changes:
        changes, self.changes = self.changes, Changes()
        return changes

    def digest(self) -> str:
        """sha256 over the sorted (book id, stock, reserved) rows: equal states, equal digests."""
        h = hashlib.sha256()
        for book_id in sorted(self.books):
            row = self.books[book_id]
            h.update(f"{book_id}\t{row.stock}\t{row.reserved}\n".encode())
        return h.hexdigest()


class _Staged:
    """The participant's store over the machine's txns, holding back its writes:
    the machine keeps them only when the op is not refused."""

    def __init__(self, txns: dict[str, Txn], epoch: int) -> None:
        self.txns = txns
        self.epoch = epoch
        self.written: dict[str, Txn] = {}

    def get(self, txn_id: str) -> Txn | None:
        return self.written.get(txn_id) or self.txns.get(txn_id)

    def put(self, record: Txn) -> None:
        self.written[record.txn_id] = record

    def highest_epoch(self) -> int:
        return self.epoch

    def set_highest_epoch(self, epoch: int) -> None:
        self.epoch = epoch
