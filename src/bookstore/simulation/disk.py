"""A process's simulated disk: what was written, and what of it was fsynced.

`put` and `append` are held back until `fsync`; `crash` drops whatever was not
fsynced, as a power cut would. Reads see the process's own writes (the page
cache) until a crash.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class Disk:
    def __init__(self) -> None:
        self.durable: dict[str, Any] = {}
        self.logs: dict[str, list[Any]] = {}
        self._pending: list[tuple[str, Any, int]] = []  # (key, value, log start or -1)
        self.fsyncs = 0

    @property
    def dirty(self) -> bool:
        return bool(self._pending)

    def put(self, key: str, value: Any) -> None:
        self._pending.append((key, value, -1))

    def append(self, name: str, start: int, entries: Sequence[Any]) -> None:
        """Drop the log's entries from `start` (1-based) on, then store `entries` there."""
        self._pending.append((name, tuple(entries), start))

    def get(self, key: str, default: Any = None) -> Any:
        for k, value, start in reversed(self._pending):
            if k == key and start < 0:
                return value
        return self.durable.get(key, default)

    def fsync(self) -> None:
        for key, value, start in self._pending:
            if start < 0:
                self.durable[key] = value
            else:
                log = self.logs.setdefault(key, [])
                del log[start - 1 :]
                log.extend(value)
        self._pending.clear()
        self.fsyncs += 1

    def log(self, name: str) -> list[Any]:
        """The durable log `name` (its fsynced entries)."""
        return self.logs.setdefault(name, [])

    def crash(self) -> int:
        """The power goes: unsynced writes are lost; how many."""
        lost = len(self._pending)
        self._pending.clear()
        return lost

    def rollback(self) -> None:
        """Forget the writes not yet fsynced (a transaction undone)."""
        self._pending.clear()
