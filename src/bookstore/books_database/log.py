"""A replica's log in memory: the entries after its snapshot, by absolute index.

Indices start at 1. Everything up to `snap_index` has been compacted into the
applied stock (the snapshot); the entry at `snap_index` was of view `snap_view`,
which is all the log still knows of it (the prev check of an Append at that
index, the election's last view of an empty log).
"""

from __future__ import annotations

from collections.abc import Iterable

from bookstore.books_database.messages import Entry


class Log:
    def __init__(self, entries: Iterable[Entry] = (), snap_index: int = 0, snap_view: int = 0):
        self.entries: list[Entry] = list(entries)
        self.snap_index = snap_index
        self.snap_view = snap_view

    @property
    def last_index(self) -> int:
        return self.snap_index + len(self.entries)

    @property
    def last_view(self) -> int:
        return self.entries[-1].view if self.entries else self.snap_view

    def __getitem__(self, index: int) -> Entry:
        """The entry at `index` (after the snapshot, at most last_index)."""
        if not self.snap_index < index <= self.last_index:
            raise IndexError(f"no entry {index} in a log of ({self.snap_index}, {self.last_index}]")
        return self.entries[index - self.snap_index - 1]

    def get(self, index: int) -> Entry | None:
        """The entry at `index`, or None if compacted or beyond the end."""
        return self[index] if self.snap_index < index <= self.last_index else None

    def view_at(self, index: int) -> int:
        """The view of the entry at `index` (0 before the first entry); the snapshot's
        own index included, not the entries compacted before it."""
        if index == self.snap_index:
            return self.snap_view
        return self[index].view

    def slice(self, start: int, count: int) -> tuple[Entry, ...]:
        """Up to `count` entries from `start` (after the snapshot)."""
        first = start - self.snap_index - 1
        return tuple(self.entries[first : first + count])

    def append(self, entries: Iterable[Entry]) -> None:
        self.entries.extend(entries)

    def truncate_from(self, index: int) -> None:
        """Drop the entries at `index` and after (all after the snapshot)."""
        del self.entries[index - self.snap_index - 1 :]

    def compact(self, index: int) -> None:
        """Drop the entries up to `index`: the snapshot now ends there."""
        view = self.view_at(index)
        del self.entries[: index - self.snap_index]
        self.snap_index, self.snap_view = index, view

    def reset(self, snap_index: int, snap_view: int) -> None:
        """An installed snapshot: the log starts, empty, after it."""
        self.entries = []
        self.snap_index, self.snap_view = snap_index, snap_view
