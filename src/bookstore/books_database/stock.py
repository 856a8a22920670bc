"""The stock of every book as a deterministic state machine: ops in log order.

Every replica applies the same committed ops in the same order and so holds
the same state. Rules:

1. available = stock - reserved; neither ever goes negative.
2. reserve(txn, items, epoch): all or nothing. Lacking copies -> refused with
   the titles that lack them (a normal answer: the 2PC "no" vote).
   commit(txn, epoch) takes the reserved copies out of stock;
   release(txn, epoch) frees them. A txn released (or never reserved and
   released: presumed abort) cannot be reserved or committed later.
3. Fencing: the highest coordinator epoch of an accepted op is replicated
   state; a reserve/commit/release with a lower epoch is refused (STALE_EPOCH).
4. Idempotent by request id: a request id seen before gets its first answer
   back, whatever the op says now.
5. Malformed ops (unknown book, quantity <= 0 or over MAX_QUANTITY, empty
   items, a book twice) are refused and change nothing. The service checks
   the same before an op enters the log; this is the replicas' own check.

Every change is also recorded in `changes` so storage can write just the rows
that moved (drained by `take_changes`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

MAX_QUANTITY = 1_000_000  # per line and per set_stock: anything larger is a mistake
MAX_ITEMS = 100
MAX_ID = 200  # characters of a request or transaction id

OK = "OK"
# Named result codes (the gRPC layer maps them to status codes).
OUT_OF_STOCK = "OUT_OF_STOCK"  # refused reservation (a normal answer)
STALE_EPOCH = "STALE_EPOCH"  # FAILED_PRECONDITION
TXN_FINISHED = "TXN_FINISHED"  # FAILED_PRECONDITION: released/committed txn reused
BELOW_RESERVED = "BELOW_RESERVED"  # FAILED_PRECONDITION: set_stock under reserved copies
UNKNOWN_BOOK = "UNKNOWN_BOOK"  # NOT_FOUND
UNKNOWN_TXN = "UNKNOWN_TXN"  # NOT_FOUND
BAD_REQUEST = "BAD_REQUEST"  # INVALID_ARGUMENT

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
    lacking: tuple[str, ...] = ()  # OUT_OF_STOCK: titles lacking copies

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


@dataclass
class Txn:
    state: str  # "reserved" | "committed" | "released"
    items: tuple[tuple[str, int], ...]


@dataclass
class Changes:
    books: set[str] = field(default_factory=set)
    txns: set[str] = field(default_factory=set)
    answers: dict[str, Result] = field(default_factory=dict)


NOOP_OP = Op(NOOP)


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
        if op.epoch < self.max_epoch:
            return Result(
                STALE_EPOCH, f"epoch {op.epoch} is older than the current epoch {self.max_epoch}"
            )
        result = self._reserve(op) if op.kind == RESERVE else self._finish(op)
        if result.ok:  # a refused op changes nothing, not even the epoch
            self.max_epoch = op.epoch
        return result

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

    def _reserve(self, op: Op) -> Result:
        known = self.txns.get(op.txn_id)
        if known is not None:
            return Result(TXN_FINISHED, f"transaction {op.txn_id} is already {known.state}")
        lacking = tuple(self.books[b].title for b, q in op.items if self.books[b].available < q)
        if lacking:
            return Result(OUT_OF_STOCK, "out of stock: " + ", ".join(lacking), lacking)
        for book_id, quantity in op.items:
            self.books[book_id].reserved += quantity
            self.changes.books.add(book_id)
        self._set_txn(op.txn_id, Txn("reserved", op.items))
        return Result()

    def _finish(self, op: Op) -> Result:
        """commit or release: idempotent per txn; release of an unknown txn is presumed abort."""
        target = "committed" if op.kind == COMMIT else "released"
        txn = self.txns.get(op.txn_id)
        if txn is None:
            if op.kind == COMMIT:
                return Result(UNKNOWN_TXN, f"no reservation for transaction {op.txn_id}")
            self._set_txn(op.txn_id, Txn("released", ()))
            return Result()
        if txn.state == target:
            return Result()
        if txn.state != "reserved":
            return Result(TXN_FINISHED, f"transaction {op.txn_id} is already {txn.state}")
        for book_id, quantity in txn.items:
            row = self.books[book_id]
            row.reserved -= quantity
            if op.kind == COMMIT:
                row.stock -= quantity
            self.changes.books.add(book_id)
        self._set_txn(op.txn_id, Txn(target, txn.items))
        return Result()

    def _set_txn(self, txn_id: str, txn: Txn) -> None:
        self.txns[txn_id] = txn
        self.changes.txns.add(txn_id)

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
