"""Primary-backup replication with majority acknowledgement and fenced views,
as a pure state machine: messages, client requests and time in, `Output` out.

No sockets and no clocks here (the adapter is driver.py; the messages and the
Output are in messages.py; the replica's state and plumbing in replica_state.py,
its log in log.py, the primary's record of its backups in progress.py). It is
Raft's log replication and election, in Viewstamped Replication's words (view =
term). Rules, as implemented:

1. Every message carries its sender's view. A replica refuses anything from a
   lower view (answering with its own, so the sender learns it is stale) and,
   on seeing a higher view, adopts it and becomes a backup. This check is
   written once, in `on_message`, and lives in the receiving replica: a
   deposed primary that wakes from a pause can change nothing anywhere.
2. Durable state: the view, the vote of that view, the log (after its
   snapshot), and the applied stock, which is the snapshot (storage.py). The
   adapter persists an Output's `hard_state`, `log_writes`, compaction and
   `changes` (one fsync) *before* it sends the Output's `messages`: a vote, an
   acknowledgement, is never given for what is not on disk. Only the primary's
   Appends and snapshots are `eager`: they leave while its own log is being
   written (Raft's leader does the same), since they promise nothing about its
   disk; the adapter tells the replica when its writes are done
   (`on_persisted`), and only then does the primary count itself (rule 5).
   Nothing eager leaves in an Output that changes the hard state.
3. Election: a backup that hears no primary for a randomised election timeout
   (or whose adapter saw the primary's connection close: at once, the highest
   id first, `on_peer_lost`) first asks the others whether they would vote for
   it in view+1 (pre-vote: nothing changes; a replica says yes only if its
   log is not ahead and it has not heard a live primary for election_min,
   nor saw its connection close), so a replica cut off by a
   partition cannot depose a working primary when it comes back. With a
   majority of yeses it starts view+1, votes for itself and asks the others.
   A replica grants one vote per view, only to a candidate whose last (view,
   index) is >= its own
   (Raft's election restriction: the winner holds every committed entry).
   A majority of votes makes a primary; it appends a no-op of its own view,
   and serves reads only once that no-op is committed.
4. Replication is batched and pipelined: each `on_tick` sends every backup
   the entries it has not been sent yet in one Append (at most MAX_BATCH),
   without waiting for earlier Appends to be acknowledged. A backup accepts an
   Append only if its log holds the entry before them (prev index and view);
   otherwise it answers with a hint and the primary resends from there. A
   conflicting uncommitted suffix is truncated. The writes of one client batch
   (`submit_many`) enter the log in one append, so they share that round too.
5. An entry is committed once a majority holds it durably (the primary counts
   itself only for what `on_persisted` said is on its disk) and it (or a later
   entry) is of the primary's own view; committed entries are applied to the
   stock machine in log order on every replica. An answer is given once its
   entry is applied, without waiting for the applied stock to reach this disk:
   the entry is on a majority's, and replaying it gives the same state.
6. Reads are linearizable (read index, reads.py): a read is answered once a
   majority has answered the round after it arrived and the stock is applied
   up to the commit index it arrived at. Backups never answer reads. An
   advisory read (`read_applied`): the applied stock at once, no round; stale
   if this primary was deposed, so for advice only (the reserve decides).
7. A primary that has not heard from a majority for the longest election
   timeout steps down (so clients go elsewhere); requests it was still
   waiting on are answered UNKNOWN (they may yet commit: retry by request id).
8. Compaction (etcd's raft): every replica drops applied entries behind the
   newest `Compaction.keep` ones; the applied stock is the snapshot, and the
   log (log.py) remembers the index and view of its last entry. A backup
   whose next entry is compacted gets an InstallSnapshot (the primary's
   applied state at its applied index), at most once per `election_max`; it
   installs it unless it already holds that entry, and answers as to an
   Append. Entries behind a replica's snapshot are committed, so an Append
   reaching behind it is matched from the snapshot on.

What happens to the log's entries is told to an `Observer` (messages.py): by
default nobody listens, and nothing here depends on who does.
"""

from __future__ import annotations

from collections.abc import Sequence

from bookstore.books_database.messages import (
    Answer,
    Append,
    AppendReply,
    Entry,
    InstallSnapshot,
    LogWrite,
    Message,
    Output,
    RequestVote,
    Vote,
)
from bookstore.books_database.progress import Backups
from bookstore.books_database.reads import applied
from bookstore.books_database.replica_state import (
    BACKUP,
    CANDIDATE,
    NOT_PRIMARY,
    PRIMARY,
    UNKNOWN,
    ReplicaState,
)
from bookstore.books_database.stock import NOOP_OP, Image, Op, Result

__all__ = ["BACKUP", "CANDIDATE", "NOT_PRIMARY", "PRIMARY", "UNKNOWN", "Replica"]
SNAPSHOT_ROWS = 5_000  # txns and answers per part of a snapshot: about 0.7 MB on the wire


class Replica(ReplicaState):
    """One replica: the rules above over its state (replica_state.py)."""

    # -- inputs ---------------------------------------------------------------

    def on_message(self, msg: Message, now: float) -> Output:
        self._arm(now)
        if msg.sender not in self.peers:  # not a member: its vote or ack must not count
            return self.take_output()
        if isinstance(msg, RequestVote | Vote) and msg.pre:
            self._on_pre_vote(msg, now)
            return self.take_output()
        if msg.view > self.view:
            self._adopt_view(msg.view, now)
        if msg.view < self.view:
            self._refuse_stale(msg)
        elif isinstance(msg, RequestVote):
            self._on_request_vote(msg, now)
        elif isinstance(msg, Vote):
            self._on_vote(msg, now)
        elif isinstance(msg, Append):
            self._on_append(msg, now)
        elif isinstance(msg, InstallSnapshot):
            self._on_install(msg, now)
        else:
            self._on_append_reply(msg, now)
        return self.take_output()

    def on_tick(self, now: float) -> Output:
        self._arm(now)
        if self.role == PRIMARY:
            if not self._has_quorum(now):
                self._note(f"lost the majority in view {self.view}; stepping down")
                self._become_backup(now)
            else:
                self._broadcast(now)
        elif self._deadline is not None and now >= self._deadline:
            self._start_pre_vote(now)
        return self.take_output()

    def on_peer_lost(self, peer: int, now: float) -> Output:
        """Rule 3: the adapter saw my primary's connection close and stay closed (a
        killed process): no need to wait out the election timeout."""
        if self.role == BACKUP and self.leader == peer:
            self._note(f"primary {peer} gone")
            self._gone = (self.view, peer)
            higher = [p for p in self.peers if p > self.my_id and p != peer]
            self._deadline = now + self.timings.after_loss * len(higher)
        return self.take_output()

    def on_persisted(self, now: float) -> Output:
        """The adapter wrote every Output taken so far: the primary may count itself
        for its whole log (rule 5)."""
        self._arm(now)
        self._durable = self.last_index
        if self.role == PRIMARY:
            self._primary_commit()
        return self.take_output()

    def submit_many(self, writes: Sequence[tuple[int, Op]], now: float) -> Output:
        """Client writes (ticket, op), proposed together: the new entries go into the
        log in one append, so one Append round and one fsync carry them all. Each gets
        its own Answer once it is committed and applied."""
        self._arm(now)
        entries: list[Entry] = []
        for ticket, op in writes:
            invalid = self.machine.validate(op)
            if self.role != PRIMARY:
                self._answer(ticket, self._not_primary())
            elif not invalid.ok:
                self._answer(ticket, invalid)
            elif op.request_id and op.request_id in self.machine.answers:
                self._answer(ticket, self.machine.answers[op.request_id])
            else:
                entries.append(Entry(self.view, op))
                self._pending[self.last_index + len(entries)] = ticket
        self._append_local(*entries)
        return self.take_output()

    def read(self, ticket: int, book_ids: tuple[str, ...], now: float) -> Output:
        """A linearizable read, answered after the next round confirms this primary."""
        self._arm(now)
        unknown = [b for b in book_ids if b not in self.machine.books]
        if self.role != PRIMARY:
            self._answer(ticket, self._not_primary())
        elif unknown:
            self._answer(ticket, Result("UNKNOWN_BOOK", f"no book with id {unknown[0]!r}"))
        else:
            self._reads.add(ticket, book_ids, max(self.commit, self._noop_index), self.round + 1)
            self._serve_reads()
        return self.take_output()

    def read_applied(self, book_ids: tuple[str, ...]) -> Answer:
        """Rule 6's advisory read: the applied stock now, with no round (ticket 0)."""
        unknown = [b for b in book_ids if b not in self.machine.books]
        if self.role != PRIMARY:
            return Answer(0, self._not_primary())
        if unknown:
            return Answer(0, Result("UNKNOWN_BOOK", f"no book with id {unknown[0]!r}"))
        return applied(0, book_ids, self.machine)

    # -- the rules ------------------------------------------------------------

    def _refuse_stale(self, msg: Message) -> None:
        if isinstance(msg, RequestVote):
            self._send(msg.sender, Vote(self.view, self.my_id, False))
        elif isinstance(msg, Append | InstallSnapshot):
            self._send(msg.sender, AppendReply(self.view, self.my_id, False, 0, msg.round))

    def _on_request_vote(self, msg: RequestVote, now: float) -> None:
        up_to_date = (msg.last_view, msg.last_index) >= (self.last_view, self.last_index)
        grant = self.role == BACKUP and self.voted_for in (0, msg.sender) and up_to_date
        if grant:
            self.voted_for = msg.sender
            self._out.hard_state = (self.view, self.voted_for)
            self._reset_deadline(now)
        self._send(msg.sender, Vote(self.view, self.my_id, grant))

    def _on_vote(self, msg: Vote, now: float) -> None:
        if self.role == CANDIDATE and msg.granted:
            self._votes.add(msg.sender)
            if len(self._votes) + 1 >= self.majority:
                self._become_primary(now)

    def _follow(self, msg: Append | InstallSnapshot, now: float) -> None:
        """The primary of my view spoke: follow it."""
        if self.role == PRIMARY:  # impossible: one primary per view
            raise AssertionError(f"two primaries in view {self.view}")
        if self.role == CANDIDATE:
            self._become_backup(now)
        if self.leader != msg.sender:
            self._note(f"following primary {msg.sender} in view {self.view}")
        self.leader = msg.sender
        if (self.view, msg.sender) != self._gone:
            self._heard_at = now
            self._prevotes = None
            self._reset_deadline(now)

    def _on_append(self, msg: Append, now: float) -> None:
        self._follow(msg, now)
        prev, entries = msg.prev_index, msg.entries
        if prev > self.last_index:
            self._reply(msg, False, self.last_index)
            return
        if prev < self.log.snap_index:  # committed here, so they match: skip them
            skip = min(self.log.snap_index - prev, len(entries))
            prev, entries = prev + skip, entries[skip:]
        elif self.log.view_at(prev) != msg.prev_view:
            self._reply(msg, False, self.commit)
            return
        self._store_entries(prev, entries)
        match = prev + len(entries)
        self._advance_commit(min(msg.commit, match))
        if self.machine.applied >= msg.commit:
            self._catch_up()
        self._reply(msg, True, match)

    def _store_entries(self, prev_index: int, entries: tuple[Entry, ...]) -> None:
        for offset, entry in enumerate(entries):
            index = prev_index + 1 + offset
            if index <= self.last_index and self.log.view_at(index) == entry.view:
                continue  # already held
            if index <= self.commit:
                raise AssertionError(f"a committed entry at {index} conflicts")
            self.log.truncate_from(index)
            self._durable = min(self._durable, index - 1)
            self.log.append(entries[offset:])
            self._out.log_writes.append(LogWrite(index, entries[offset:]))
            self.observer.stored(index, entries[offset:])
            return

    def _on_install(self, msg: InstallSnapshot, now: float) -> None:
        """Rule 8: take the primary's state, unless this log already holds its entry."""
        self._follow(msg, now)
        held = msg.index <= self.commit or (
            msg.index <= self.last_index and self.log.view_at(msg.index) == msg.last_view
        )
        if not held:
            image = self._assemble(msg)
            if image is None:
                return  # more parts to come
            self.machine.restore(image, msg.index)
            self.log.reset(msg.index, msg.last_view)
            self.commit = msg.index
            self._durable = 0  # until this is written (on_persisted)
            self.snapshots_installed += 1
            self._out.log_writes = []
            self._out.installed = True
            self._out.compacted = (msg.index, msg.last_view)
            self._note(f"installed a snapshot at index {msg.index} from {msg.sender}")
        self._send(msg.sender, AppendReply(self.view, self.my_id, True, msg.index, msg.round))

    def _assemble(self, msg: InstallSnapshot) -> Image | None:
        """The whole image once every part of `msg`'s snapshot has arrived."""
        first = next(iter(self._snapshot_parts.values()), None)
        if first is not None and (first.view, first.index) != (msg.view, msg.index):
            self._snapshot_parts = {}  # parts of an older snapshot: forgotten
        self._snapshot_parts[msg.part] = msg
        if len(self._snapshot_parts) < msg.parts:
            return None
        parts, self._snapshot_parts = self._snapshot_parts, {}
        return Image.join([parts[k].image for k in range(msg.parts)])

    def _on_append_reply(self, msg: AppendReply, now: float) -> None:
        if self.role != PRIMARY:
            return
        before = self._backups.on_reply(msg, now)
        if before is not None:
            self.observer.acked(msg.sender, before, msg.match_index, self.log.get)
            self._primary_commit()
        self._serve_reads()

    def _start_pre_vote(self, now: float) -> None:
        """Ask before disrupting: only a majority's yes starts a real election."""
        if self.majority == 1:
            self._start_election(now)
            return
        self._prevotes = set()
        self._reset_deadline(now)
        ask = RequestVote(self.view + 1, self.my_id, self.last_view, self.last_index, pre=True)
        for peer in self.peers:
            self._send(peer, ask)

    def _on_pre_vote(self, msg: RequestVote | Vote, now: float) -> None:
        """A yes carries the proposed view; a no carries the refuser's own (real) view,
        so a candidate behind in views catches up instead of asking forever."""
        if isinstance(msg, RequestVote):
            up_to_date = (msg.last_view, msg.last_index) >= (self.last_view, self.last_index)
            grant = msg.view > self.view and up_to_date and not self._hears_primary(now)
            view = msg.view if grant else self.view
            self._send(msg.sender, Vote(view, self.my_id, grant, pre=True))
        elif msg.granted and self._prevotes is not None and msg.view == self.view + 1:
            self._prevotes.add(msg.sender)
            if len(self._prevotes) + 1 >= self.majority:
                self._start_election(now)
        elif not msg.granted and msg.view > self.view:
            self._adopt_view(msg.view, now)

    def _start_election(self, now: float) -> None:
        self._prevotes = None
        self._become_backup(now)
        self.view += 1
        self.voted_for = self.my_id
        self._out.hard_state = (self.view, self.voted_for)
        self.role = CANDIDATE
        self._votes = set()
        self._note(f"calling an election for view {self.view}")
        if self.majority == 1:
            self._become_primary(now)
            return
        for peer in self.peers:
            self._send(peer, RequestVote(self.view, self.my_id, self.last_view, self.last_index))

    def _become_primary(self, now: float) -> None:
        self.role = PRIMARY
        self.leader = self.my_id
        self._note(f"primary of view {self.view}")
        self._backups = Backups(self.peers, self.last_index, now)
        self._append_local(Entry(self.view, NOOP_OP))
        self._noop_index = self.last_index
        self._primary_commit()
        self._broadcast(now, force=True)

    def _become_backup(self, now: float) -> None:
        if self.role == PRIMARY:
            for ticket in self._pending.values():
                self._answer(ticket, Result(UNKNOWN, f"replica {self.my_id} lost its view"))
            for ticket in self._reads.drop():
                self._answer(ticket, self._not_primary())
            self._pending.clear()
        self.role = BACKUP
        self._reset_deadline(now)

    def _adopt_view(self, view: int, now: float) -> None:
        self._become_backup(now)
        self.view = view
        self.voted_for = 0
        self.leader = 0
        self._out.hard_state = (self.view, self.voted_for)

    def _broadcast(self, now: float, force: bool = False) -> None:
        """One Append per backup: what it has not been sent, or a heartbeat."""
        behind = self._backups.behind(
            self.last_index, self.log.snap_index, now, self.timings.election_max
        )
        reads_waiting = self._reads.waiting_for(self.round)
        due = now - self._last_broadcast >= self.timings.heartbeat
        if not (force or behind or reads_waiting or due):
            return
        self.round += 1
        self._last_broadcast = now
        for peer in self.peers:
            planned = self._backups.next_append(peer, self.log)
            if planned is None and self._backups.snapshot_due(peer, now, self.timings.election_max):
                self._send_snapshot(peer, now)
                continue
            # None: its snapshot is on the way, a heartbeat meanwhile
            prev, entries = planned or (self.log.snap_index, ())
            prev_view = self.log.view_at(prev)
            append = Append(
                self.view, self.my_id, prev, prev_view, entries, self.commit, self.round
            )
            self._send(peer, append, eager=True)
        self._serve_reads()

    def _send_snapshot(self, peer: int, now: float) -> None:
        """Rule 8: the applied state, for a backup whose next entry is compacted."""
        index, view = self.machine.applied, self.log.view_at(self.machine.applied)
        parts = self.machine.image().split(SNAPSHOT_ROWS)
        for k, image in enumerate(parts):
            snap = InstallSnapshot(
                self.view, self.my_id, index, view, image, self.round, k, len(parts)
            )
            self._send(peer, snap, eager=True)
        self._backups.snapshot_sent(peer, index, now)

    def _primary_commit(self) -> None:
        for index in range(self.last_index, self.commit, -1):
            if self.log[index].view != self.view:
                break
            mine = 1 if self._durable >= index else 0  # rule 5: once on my own disk
            holders = mine + self._backups.holders(index)
            if holders >= self.majority:
                self._advance_commit(index)
                break

    def _advance_commit(self, index: int) -> None:
        if index <= self.commit:
            return
        self.commit = index
        while self.machine.applied < self.commit:
            at = self.machine.applied + 1
            result = self.machine.apply(at, self.log[at].op)
            self.observer.applied(at, self.log[at])
            ticket = self._pending.pop(at, None)
            if ticket is not None:
                self._answer(ticket, result)
        if self.role == PRIMARY and self.commit >= self._noop_index:
            self._catch_up()
        self._compact()

    def _compact(self) -> None:
        """Rule 8: drop the applied entries behind the newest `keep`."""
        upto = self.machine.applied - self.compaction.keep
        if upto - self.log.snap_index >= max(1, self.compaction.every):
            self.log.compact(upto)
            self._out.compacted = (upto, self.log.snap_view)

    def _serve_reads(self) -> None:
        if self.role != PRIMARY:
            return
        majority_round = self._backups.majority_round(self.majority, self.round)
        self._out.answers += self._reads.serve(majority_round, self.machine)

    def _has_quorum(self, now: float) -> bool:
        recent = self._backups.recent(now, self.timings.election_max)
        return 1 + recent >= self.majority
