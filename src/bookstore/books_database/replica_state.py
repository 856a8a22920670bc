"""The state a replica keeps and the plumbing of its steps, for replication.py:
what storage hands it at start, the roles' bookkeeping, and how a step's
effects (messages, answers, writes, notes) gather into its `Output`. The rules
themselves are `Replica`'s (replication.py).
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from bookstore.books_database.log import Log
from bookstore.books_database.messages import (
    Answer,
    Append,
    AppendReply,
    Compaction,
    Entry,
    InstallSnapshot,
    LogWrite,
    Message,
    Observer,
    Outgoing,
    Output,
    Timings,
)
from bookstore.books_database.progress import Backups
from bookstore.books_database.reads import ReadIndex
from bookstore.books_database.stock import Result, StockMachine

BACKUP, CANDIDATE, PRIMARY = "backup", "candidate", "primary"
NOT_PRIMARY = "NOT_PRIMARY"  # definitely not done: ask the primary
UNKNOWN = "UNKNOWN"  # the primary lost its view while the op was in flight


class ReplicaState:
    """One replica's state. `log` (the entries after `snapshot`, its (index, view)),
    `view`, `voted_for` and `machine` (the applied stock) come from storage."""

    def __init__(
        self,
        my_id: int,
        peer_ids: Iterable[int],
        machine: StockMachine,
        *,
        view: int = 0,
        voted_for: int = 0,
        log: Iterable[Entry] = (),
        snapshot: tuple[int, int] = (0, 0),
        timings: Timings | None = None,
        compaction: Compaction | None = None,
        rng: random.Random | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.my_id = my_id
        self.peers = sorted(set(peer_ids) - {my_id})
        self.majority = (len(self.peers) + 1) // 2 + 1
        self.machine = machine
        self.view = view
        self.voted_for = voted_for
        self.log = Log(log, *snapshot)
        if not self.log.snap_index <= machine.applied <= self.log.last_index:
            raise ValueError("the applied state is not within the log")
        self.timings = timings or Timings()
        self.compaction = compaction or Compaction()
        self.snapshots_installed = 0
        self._snapshot_parts: dict[int, InstallSnapshot] = {}  # of one snapshot, by part
        self.rng = rng or random.Random()
        self.role = BACKUP
        self.leader = 0
        self.commit = machine.applied
        self.caught_up = False  # latched: joined a view and applied what it had committed
        self.round = 0
        self._out = Output()
        self._deadline: float | None = None
        self._votes: set[int] = set()
        self._prevotes: set[int] | None = None  # pre-voting for view + 1
        self._heard_at = float("-inf")  # last Append from the primary of my view
        self._gone: tuple[int, int] | None = None  # (view, primary) whose connection closed
        self._backups = Backups((), 0, 0.0)  # the primary's record of them (progress.py)
        self._last_broadcast = float("-inf")
        self._noop_index = 0
        self._durable = self.log.last_index  # on this replica's disk (on_persisted)
        self._pending: dict[int, int] = {}  # log index -> ticket
        self._reads = ReadIndex()
        self.observer = observer or Observer()  # told what happens to the log's entries

    @property
    def last_index(self) -> int:
        return self.log.last_index

    @property
    def last_view(self) -> int:
        return self.log.last_view

    def take_output(self) -> Output:
        out, self._out = self._out, Output()
        out.changes = self.machine.take_changes()
        out.applied = self.machine.applied
        return out

    def _append_local(self, *entries: Entry) -> None:
        if not entries:
            return
        start = self.last_index + 1
        self.log.append(entries)
        self._out.log_writes.append(LogWrite(start, entries))
        for offset, entry in enumerate(entries):
            self.observer.appended(start + offset, entry)

    def _reply(self, msg: Append, ok: bool, match: int) -> None:
        self._send(msg.sender, AppendReply(self.view, self.my_id, ok, match, msg.round))

    def _catch_up(self) -> None:
        if not self.caught_up:
            self.caught_up = True
            self._note(f"caught up at index {self.machine.applied} in view {self.view}")

    def _not_primary(self) -> Result:
        return Result(NOT_PRIMARY, f"primary is {self.leader}")

    def _answer(self, ticket: int, result: Result) -> None:
        self._out.answers.append(Answer(ticket, result))

    def _send(self, to: int, msg: Message, eager: bool = False) -> None:
        (self._out.eager if eager else self._out.messages).append(Outgoing(to, msg))

    def _note(self, text: str) -> None:
        self._out.notes.append(f"replica {self.my_id}: {text}")

    def _arm(self, now: float) -> None:
        if self._deadline is None:
            self._reset_deadline(now)

    def _reset_deadline(self, now: float) -> None:
        t = self.timings
        self._deadline = now + self.rng.uniform(t.election_min, t.election_max)

    def _hears_primary(self, now: float) -> bool:
        """A live primary of my view spoke within election_min (not one whose
        connection closed: an Append it sent before it died may still arrive)."""
        if self.role == PRIMARY:
            return True
        if self.leader == 0 or (self.view, self.leader) == self._gone:
            return False
        return now - self._heard_at < self.timings.election_min
