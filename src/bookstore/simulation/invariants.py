"""The invariants, checked as the run goes (each hook is O(1) or O(one op)) and at
its end. The first one broken raises `Violation`, which stops the run.

As it goes: an acknowledged order is on disk; at most one leader acts per
epoch and nothing from an older epoch takes effect (queue, books database,
payment); a commit or abort reaches a participant only after it is logged;
replicas apply the same entry at the same log index; stock never negative;
a books answer means a majority holds the entry; every service's clock is
covered by the final clock or the order is flagged; an approved checkout ran
all six events, uncancelled, in the order a→c, b→d, c∧d→e, e→f.

At the end (faults healed, work drained): every acknowledged order executed
exactly once; payment captured iff stock committed, nothing in doubt; stock
conserved; replicas with the same applied index have the same digest; every
book's history linearizable; no order left in any checkout service; the
highest executor leads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

from bookstore import vclock
from bookstore.books_database.messages import Entry
from bookstore.books_database.stock import COMMIT, RELEASE, RESERVE, Op
from bookstore.choreography.events import EVENTS
from bookstore.orchestrator.flow import Outcome

if TYPE_CHECKING:
    from bookstore.simulation.books import BooksReplica
    from bookstore.simulation.world import World

ANSWERS = ("OK", "VOTED_NO", "ALREADY_ABORTED", "ALREADY_COMMITTED", "UNKNOWN_TXN")


class Violation(Exception):
    """An invariant broke; the message says which and how."""


class Invariants:
    def __init__(self, world: World) -> None:
        self.world = world
        self.acked: set[str] = set()
        self.completed: dict[str, str] = {}  # order -> executed | rejected
        self.grants: dict[int, int] = {}  # epoch -> the replica the queue granted it
        self.applied_at: dict[int, Entry] = {}  # log index -> the entry applied there
        self.index_of: dict[str, int] = {}  # request id -> the log index it was applied at
        self.epochs: dict[str, int] = {}  # participant -> highest epoch that took effect
        # (txn, kind) -> [first call, first answer, op, answer]: one logical op per
        # txn and kind (every request of it is idempotent by txn id)
        self.history: dict[tuple[str, str], list[Any]] = {}
        self.approved = 0

    def fail(self, message: str) -> NoReturn:
        raise Violation(message)

    # -- the checkout ---------------------------------------------------------------

    def final_checked(self, service: str, oid: str, covered: bool, consistent: bool) -> None:
        if covered != consistent:
            self.fail(
                f"{service} order {oid}: its clock is{'' if covered else ' not'} covered by"
                f" the final clock, yet the finalize said consistent={consistent}"
            )

    def answered(self, outcome: Outcome, cancelled: bool) -> None:
        oid = outcome.order_id
        final = outcome.final_clock or vclock.ZERO
        ok = {e.event: e.clock for e in outcome.events if e.ok}
        for record in outcome.events:
            if not vclock.leq(record.clock, final):
                self.fail(f"order {oid}: event {record.event}'s clock is not in the final clock")
            for dep in EVENTS[record.event].deps:
                if dep in ok and record.ok and not vclock.happened_before(ok[dep], record.clock):
                    self.fail(f"order {oid}: {dep} does not happen before {record.event}")
        if outcome.approved:
            self.approved += 1
            if cancelled or sorted(ok) != sorted(EVENTS):
                self.fail(f"order {oid} approved with events {sorted(ok)}, cancelled={cancelled}")

    # -- the queue --------------------------------------------------------------------

    def enqueue_acked(self, oid: str, durable: bool) -> None:
        if not durable:
            self.fail(f"order {oid} acknowledged before it was on disk")

    def acknowledged(self, oid: str) -> None:
        self.acked.add(oid)

    def granted(self, epoch: int, replica: int) -> None:
        if self.grants.setdefault(epoch, replica) != replica:
            self.fail(f"epoch {epoch} granted to {self.grants[epoch]} and {replica}")

    def acted(self, what: str, replica: int, epoch: int, current: int) -> None:
        if epoch < current:
            self.fail(f"{what} by x{replica} under epoch {epoch} took effect in epoch {current}")
        if self.grants.get(epoch) != replica:
            self.fail(
                f"{what} by x{replica} under epoch {epoch}, granted to {self.grants.get(epoch)}"
            )

    def completed_order(self, oid: str, outcome: str) -> None:
        if oid in self.completed:
            self.fail(f"order {oid} executed twice")
        self.completed[oid] = outcome

    # -- the participants ----------------------------------------------------------------

    def _took_effect(self, participant: str, kind: str, oid: str, epoch: int) -> None:
        highest = self.epochs.get(participant, 0)
        if epoch < highest:
            self.fail(f"{participant}: {kind} of {oid} under epoch {epoch} after epoch {highest}")
        self.epochs[participant] = epoch
        if kind in (RESERVE, "pay_prepare"):
            return
        logged = self.world.procs["queue"].disk.durable.get(f"d:{oid}")
        wanted = "commit" if kind in (COMMIT, "pay_commit") else "abort"
        if logged is None or logged[0] != wanted:
            self.fail(f"{participant}: {wanted} of {oid} while the log holds {logged}")

    def participant_applied(self, participant: str, kind: str, oid: str, epoch: int) -> None:
        self._took_effect(participant, kind, oid, epoch)

    def stock_applied(self, replica: BooksReplica, index: int, entry: Entry) -> None:
        first = self.applied_at.get(index)
        if first is not None and first != entry:
            self.fail(f"{replica.name} applied {entry} at {index}, another replica {first}")
        machine = replica.replica.machine
        for book_id, _ in entry.op.items:
            row = machine.books[book_id]
            if row.stock < 0 or row.reserved < 0 or row.available < 0:
                self.fail(f"{replica.name}: book {book_id} went negative: {row}")
        if first is not None:
            return
        self.applied_at[index] = entry
        op = entry.op
        if op.request_id:
            self.index_of[op.request_id] = index
        if op.kind in (RESERVE, COMMIT, RELEASE):
            result = machine.answers.get(op.request_id)
            if result is not None and result.code in ("OK", "VOTED_NO"):
                self._took_effect("books-database", op.kind, op.txn_id, op.epoch)

    def answered_write(self, replica: BooksReplica, request_id: str) -> None:
        index = self.index_of.get(request_id)
        if index is None:
            raise Violation(f"{replica.name} answered {request_id}, which no replica applied")
        entry = self.applied_at[index]
        holders = 0
        for i in (1, 2, 3):
            holders += self.world.procs[f"db{i}"].holds(index, entry)  # type: ignore[attr-defined]
        if holders < 2:
            self.fail(f"{replica.name} answered {request_id} held by {holders} of 3 replicas")

    # -- the stock's history, for the linearizability check --------------------------------

    def invoked(self, request_id: str, op: Op) -> None:
        key = (op.txn_id, op.kind)
        if key not in self.history:
            self.history[key] = [self.world.sched.now, None, op, None]

    def returned(self, request_id: str, code: str) -> None:
        oid, kind, _ = request_id.split("/")
        record = self.history.get((oid, kind))
        if record is not None and record[1] is None and code in ANSWERS:
            record[1], record[3] = self.world.sched.now, code
