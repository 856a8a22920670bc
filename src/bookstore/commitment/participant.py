"""A two-phase-commit participant: the generic life cycle, fenced by epoch.

Rules, as implemented (each operation reads and writes only `ParticipantStore`,
which the caller makes durable in one transaction before it answers):

1. Fencing, the one check every message gets: the store remembers the highest
   coordinator epoch it has seen; a prepare, commit or abort with a lower
   epoch is refused (STALE_EPOCH) and changes nothing; a higher one is
   remembered before anything else happens.
2. Prepare of a new txn: the resource votes. Yes -> PREPARED (durable before
   the vote is sent). No -> ABORTED with the reason, so a repeated prepare
   answers the same no.
3. Prepare of a known txn answers its first outcome: PREPARED -> yes (a
   re-prepare by a newer coordinator takes its epoch), COMMITTED -> yes,
   ABORTED -> no with the first reason. The same txn id with a different
   request is refused (TXN_MISMATCH).
4. Commit: PREPARED -> COMMITTED; COMMITTED -> the same answer again;
   ABORTED -> refused (ALREADY_ABORTED); unknown -> refused (UNKNOWN_TXN: a
   commit is only ever decided after a yes vote).
5. Abort: PREPARED -> ABORTED; ABORTED -> the same answer again; COMMITTED ->
   refused (ALREADY_COMMITTED); unknown -> ABORTED (presumed abort: a late
   prepare will then vote no).
6. A PREPARED txn never decides alone. A participant that restarts with
   prepared txns asks the decision log (`resolve`): COMMIT or ABORT is
   applied whatever the epoch (the log is the authority); no decision ->
   it keeps waiting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

P = TypeVar("P")


class State(StrEnum):
    PREPARED = "prepared"
    COMMITTED = "committed"
    ABORTED = "aborted"


class Decision(StrEnum):
    COMMIT = "commit"
    ABORT = "abort"


class TxnError(Exception):
    """A message the participant refuses; `code` is the named result code."""

    code = "BAD_REQUEST"

    def __init__(self, message: str) -> None:
        super().__init__(f"{self.code}: {message}")
        self.message = message


class BadRequest(TxnError):
    code = "BAD_REQUEST"


class StaleEpoch(TxnError):
    code = "STALE_EPOCH"


class AlreadyAborted(TxnError):
    code = "ALREADY_ABORTED"


class AlreadyCommitted(TxnError):
    code = "ALREADY_COMMITTED"


class UnknownTxn(TxnError):
    code = "UNKNOWN_TXN"


class TxnMismatch(TxnError):
    code = "TXN_MISMATCH"


@dataclass(frozen=True)
class Record(Generic[P]):
    """One transaction as the participant keeps it. `request` is None for a
    txn first seen as an abort (presumed abort)."""

    txn_id: str
    state: State
    epoch: int
    request: P | None
    reason: str = ""


@dataclass(frozen=True)
class Vote:
    yes: bool
    reason: str = ""
    state: State = State.PREPARED


class ParticipantStore(Protocol[P]):
    """The participant's durable state; the caller commits it before answering."""

    def get(self, txn_id: str) -> Record[P] | None: ...

    def put(self, record: Record[P]) -> None: ...

    def highest_epoch(self) -> int: ...

    def set_highest_epoch(self, epoch: int) -> None: ...


# The resource's vote on a new txn: "" for yes, else the reason for no.
Check = Callable[[P], str]


class Participant(Generic[P]):
    """The rules above over a store; the resource supplies only its vote."""

    def __init__(self, store: ParticipantStore[P]) -> None:
        self.store = store

    def _fence(self, epoch: int) -> None:
        """Rule 1."""
        highest = self.store.highest_epoch()
        if epoch < highest:
            raise StaleEpoch(f"epoch {epoch} is older than {highest}")
        if epoch > highest:
            self.store.set_highest_epoch(epoch)

    def prepare(self, txn_id: str, epoch: int, request: P, check: Check[P]) -> Vote:
        """Rules 2 and 3."""
        self._fence(epoch)
        record = self.store.get(txn_id)
        if record is None:
            reason = check(request)
            state = State.ABORTED if reason else State.PREPARED
            self.store.put(Record(txn_id, state, epoch, request, reason))
            return Vote(not reason, reason, state)
        if record.request is not None and record.request != request:
            raise TxnMismatch(f"txn {txn_id} was prepared with another request")
        if record.state is State.ABORTED:
            return Vote(False, record.reason or "aborted", State.ABORTED)
        if record.state is State.PREPARED and epoch > record.epoch:
            self.store.put(replace(record, epoch=epoch))
        return Vote(True, "", record.state)

    def commit(self, txn_id: str, epoch: int) -> Record[P]:
        """Rule 4."""
        self._fence(epoch)
        record = self.store.get(txn_id)
        if record is None:
            raise UnknownTxn(f"txn {txn_id} was never prepared here")
        if record.state is State.ABORTED:
            raise AlreadyAborted(f"txn {txn_id} was aborted")
        if record.state is State.PREPARED:
            record = replace(record, state=State.COMMITTED, epoch=epoch)
            self.store.put(record)
        return record

    def abort(self, txn_id: str, epoch: int, reason: str = "aborted") -> Record[P]:
        """Rule 5."""
        self._fence(epoch)
        record = self.store.get(txn_id)
        if record is None:
            record = Record(txn_id, State.ABORTED, epoch, None, reason)
            self.store.put(record)
            return record
        if record.state is State.COMMITTED:
            raise AlreadyCommitted(f"txn {txn_id} was committed")
        if record.state is State.PREPARED:
            record = replace(record, state=State.ABORTED, epoch=epoch, reason=reason)
            self.store.put(record)
        return record

    def resolve(self, txn_id: str, decision: Decision | None) -> Record[P] | None:
        """Rule 6: apply the logged decision to a prepared txn (None: keep waiting)."""
        record = self.store.get(txn_id)
        if record is None or record.state is not State.PREPARED or decision is None:
            return record
        state = State.COMMITTED if decision is Decision.COMMIT else State.ABORTED
        reason = "" if state is State.COMMITTED else "aborted"
        resolved = replace(record, state=state, reason=reason)
        self.store.put(resolved)
        return resolved


class MemoryStore(Generic[P]):
    """A ParticipantStore in memory: the durable state of a simulated participant."""

    def __init__(self) -> None:
        self.records: dict[str, Record[P]] = {}
        self.epoch = 0

    def get(self, txn_id: str) -> Record[P] | None:
        return self.records.get(txn_id)

    def put(self, record: Record[P]) -> None:
        self.records[record.txn_id] = record

    def highest_epoch(self) -> int:
        return self.epoch

    def set_highest_epoch(self, epoch: int) -> None:
        self.epoch = epoch
