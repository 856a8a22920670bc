"""The primary's record of its backups (etcd's tracker.Progress), for replication.py.

Per backup: the next index to send it (pipelined: advanced as soon as an Append
leaves), the highest index it acknowledged holding durably, the last heartbeat
round it answered and when, and when it was last sent a snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bookstore.books_database.log import Log
from bookstore.books_database.messages import AppendReply, Entry

MAX_BATCH = 512  # entries per Append


@dataclass
class Backup:
    next: int
    acked_at: float
    match: int = 0
    acked_round: int = 0
    snapshot_at: float = float("-inf")


class Backups:
    def __init__(self, peers: Iterable[int], last_index: int, now: float) -> None:
        self.of = {p: Backup(last_index + 1, now) for p in peers}

    def behind(self, last_index: int, snap_index: int, now: float, every: float) -> bool:
        """Whether some backup has not been sent the whole log, and can be sent more
        now: entries, or a snapshot if it needs one and none is in flight. (A backup
        waiting for its snapshot answers each heartbeat with a refusal; counted as
        behind, it made every answer a broadcast, and every broadcast more answers.)"""
        return any(
            b.next <= last_index and (b.next > snap_index or self.snapshot_due(p, now, every))
            for p, b in self.of.items()
        )

    def on_reply(self, msg: AppendReply, now: float) -> int | None:
        """Record a reply; the backup's match index before, if it went up."""
        b = self.of[msg.sender]
        b.acked_round = max(b.acked_round, msg.round)
        b.acked_at = now
        before = b.match
        if not msg.ok:  # resend after the index it names
            b.next = max(1, min(b.next, msg.match_index + 1))
            return None
        b.match = max(b.match, msg.match_index)
        b.next = max(b.next, b.match + 1)
        return before if b.match > before else None

    def holders(self, index: int) -> int:
        """Backups that hold `index` durably."""
        return sum(1 for b in self.of.values() if b.match >= index)

    def majority_round(self, majority: int, mine: int) -> int:
        """The heartbeat round a majority, the primary included, has answered."""
        confirmed = sorted((b.acked_round for b in self.of.values()), reverse=True)
        return confirmed[majority - 2] if majority > 1 else mine

    def recent(self, now: float, window: float) -> int:
        """Backups heard within `window`."""
        return sum(1 for b in self.of.values() if now - b.acked_at <= window)

    def next_append(self, peer: int, log: Log) -> tuple[int, tuple[Entry, ...]] | None:
        """(prev index, entries) of the next Append to `peer`, or None if what it
        needs is compacted: then it needs a snapshot."""
        b = self.of[peer]
        if b.next <= log.snap_index:
            return None
        entries = log.slice(b.next, MAX_BATCH)
        prev, b.next = b.next - 1, b.next + len(entries)
        return prev, entries

    def snapshot_due(self, peer: int, now: float, every: float) -> bool:
        """One snapshot in flight per backup: another only after `every`."""
        return now - self.of[peer].snapshot_at >= every

    def snapshot_sent(self, peer: int, index: int, now: float) -> None:
        b = self.of[peer]
        b.snapshot_at, b.next = now, index + 1
