"""The replication protocol's vocabulary: its messages, what one step of a
replica returns (`Output`: messages to send, durable writes, answers), its
timings, and the `Observer` a replica tells what it did with its log.

The rules themselves are in replication.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bookstore.books_database.stock import Changes, Image, Op, Result


@dataclass(frozen=True)
class Entry:
    view: int
    op: Op


@dataclass(frozen=True)
class RequestVote:
    view: int
    sender: int
    last_view: int
    last_index: int
    pre: bool = False  # pre-vote: "would you vote for me in `view`?" (changes nothing)


@dataclass(frozen=True)
class Vote:
    view: int
    sender: int
    granted: bool
    pre: bool = False


@dataclass(frozen=True)
class Append:
    view: int
    sender: int
    prev_index: int
    prev_view: int
    entries: tuple[Entry, ...]
    commit: int
    round: int


@dataclass(frozen=True)
class AppendReply:
    view: int
    sender: int
    ok: bool
    match_index: int  # ok: last index known to match; not ok: resend after this
    round: int


@dataclass(frozen=True)
class InstallSnapshot:
    """The primary's applied state at `index` (the entry there is of `last_view`), for a
    backup whose next entry the primary's log no longer holds. Answered by an AppendReply."""

    view: int
    sender: int
    index: int
    last_view: int
    image: Image
    round: int
    part: int = 0  # a large image comes in parts: this one of `parts`
    parts: int = 1


Message = RequestVote | Vote | Append | AppendReply | InstallSnapshot


@dataclass(frozen=True)
class Outgoing:
    to: int
    message: Message


@dataclass(frozen=True)
class LogWrite:
    """Drop every entry from `start` on, then store `entries` at start, start+1, ..."""

    start: int
    entries: tuple[Entry, ...]


@dataclass(frozen=True)
class Answer:
    ticket: int
    result: Result
    stock: tuple[tuple[str, int, int], ...] = ()  # reads: (book id, stock, available)


@dataclass
class Output:
    """What one step asks of the adapter. `messages` leave only once this Output's
    durable part is on disk; `eager` ones (the primary's Appends and snapshots, which
    promise nothing about this replica's disk) may leave while it is being written,
    unless the Output changes the hard state (`early`). `answers` may be given at once:
    each is a refusal that promises nothing, or the result of an entry committed on a
    majority's disks."""

    messages: list[Outgoing] = field(default_factory=list)
    eager: list[Outgoing] = field(default_factory=list)
    hard_state: tuple[int, int] | None = None  # (view, voted for)
    log_writes: list[LogWrite] = field(default_factory=list)
    # (index, view): the log now starts after `index`, whose entry was of `view`; the
    # applied state (at or after `index`) is the snapshot, written in the same transaction
    compacted: tuple[int, int] | None = None
    installed: bool = False  # the state was replaced by a snapshot: rewrite all of it
    changes: Changes = field(default_factory=Changes)
    applied: int = 0  # the machine's applied index, to persist with `changes`
    answers: list[Answer] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # role changes, for the log

    def merge(self, later: Output) -> Output:
        self.messages += later.messages
        self.eager += later.eager
        self.hard_state = later.hard_state or self.hard_state
        if later.installed:  # a snapshot replaces the log written before it
            self.log_writes = []
            self.installed = True
        self.log_writes += later.log_writes
        self.compacted = later.compacted or self.compacted
        self.changes.books |= later.changes.books
        self.changes.txns |= later.changes.txns
        self.changes.answers.update(later.changes.answers)
        self.applied = max(self.applied, later.applied)
        self.answers += later.answers
        self.notes += later.notes
        return self

    def early(self) -> list[Outgoing]:
        """The messages that may leave before the durable part is written: none when
        the hard state changes (a vote must be on disk before anything of its view)."""
        return self.eager if self.hard_state is None else []

    def late(self) -> list[Outgoing]:
        """The messages that leave once the durable part is written."""
        return self.messages if self.hard_state is None else self.eager + self.messages

    @property
    def durable_work(self) -> bool:
        c = self.changes
        return bool(
            self.hard_state
            or self.log_writes
            or self.compacted
            or self.installed
            or c.books
            or c.txns
            or c.answers
        )


@dataclass(frozen=True)
class Timings:
    heartbeat: float = 0.05  # must be well under election_min
    election_min: float = 0.3
    election_max: float = 0.6
    # The primary's connection gone (`on_peer_lost`): the backup with the highest id
    # stands at once, each lower one this much later per higher one (no split vote).
    after_loss: float = 0.15


@dataclass(frozen=True)
class Compaction:
    """When the log is compacted: once `every` applied entries have piled up behind
    the last `keep` ones, those are dropped (the applied stock is the snapshot). A
    backup behind the kept entries gets the snapshot instead."""

    keep: int = 1_000  # entries kept behind the applied index, for backups a little behind
    every: int = 1_000  # compact once this many more have been applied (etcd: 10,000)


class Observer:
    """Told what a replica did with its log's entries, as it does it; by default
    nobody listens. For what watches the protocol (the cluster view's per-order
    trail, trail.py), never part of it: an observer must not change the replica."""

    def appended(self, index: int, entry: Entry) -> None:
        """The primary put `entry` in its log at `index`."""

    def stored(self, first: int, entries: tuple[Entry, ...]) -> None:
        """A backup wrote `entries` to its log at `first`, `first` + 1, ..."""

    def acked(self, peer: int, before: int, now: int, entry: Callable[[int], Entry | None]) -> None:
        """Backup `peer`'s match index went from `before` to `now`; `entry(index)` is
        the entry there (None once compacted)."""

    def applied(self, index: int, entry: Entry) -> None:
        """This replica applied the entry at `index` to its stock."""
