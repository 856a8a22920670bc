"""Each replica's own record of what it did with an order's operations, for the
cluster view: bounded per transaction (txn id = order id), in memory only.

    appended  the primary put the order's reserve/commit/release in its log at `index`
    stored    a backup wrote it to its log (on disk before it acknowledges)
    acked     the primary learned that backup `peer` holds the log up to `index`
    applied   this replica applied it to its stock (committed: on a majority's disks)

A replica tells its trail as it goes (the trail is its `Observer`); only operations
with a txn id (reserve, commit, release) are recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bookstore.books_database.messages import Entry, Observer
from bookstore.bounded import BoundedMapping

TXNS_KEPT = 2_000  # orders whose replication events a replica remembers
EVENTS_PER_TXN = 32  # an order's reserve and commit on three replicas fit
# Acks recorded per jump of a backup's match index: a new primary learns in one answer
# that a backup holds the whole log; only the newest entries are worth recording.
ACK_WINDOW = 1_024


@dataclass(frozen=True)
class TrailEvent:
    replica_id: int
    kind: str  # "appended" | "stored" | "acked" | "applied"
    index: int
    view: int
    op: str  # "reserve" | "commit" | "release"
    peer: int = 0  # acked: the backup that holds it


class Trail(Observer):
    def __init__(self, replica_id: int, kept: int = TXNS_KEPT) -> None:
        self.replica_id = replica_id
        self._events: BoundedMapping[str, list[TrailEvent]] = BoundedMapping(kept)

    def events(self, txn_id: str) -> tuple[TrailEvent, ...]:
        return tuple(self._events.get(txn_id, ()))

    def _add(self, entry: Entry, kind: str, index: int, peer: int = 0) -> None:
        txn = entry.op.txn_id
        if not txn:
            return
        found = self._events.get(txn)
        if found is None:
            found = self._events[txn] = []
        if len(found) < EVENTS_PER_TXN:
            found.append(TrailEvent(self.replica_id, kind, index, entry.view, entry.op.kind, peer))

    def appended(self, index: int, entry: Entry) -> None:
        self._add(entry, "appended", index)

    def stored(self, first: int, entries: tuple[Entry, ...]) -> None:
        for offset, entry in enumerate(entries):
            self._add(entry, "stored", first + offset)

    def acked(self, peer: int, before: int, now: int, entry: Callable[[int], Entry | None]) -> None:
        """Backup `peer`'s match index went from `before` to `now`."""
        for index in range(max(before, now - ACK_WINDOW) + 1, now + 1):
            found = entry(index)
            if found is not None:
                self._add(found, "acked", index, peer)

    def applied(self, index: int, entry: Entry) -> None:
        self._add(entry, "applied", index)
