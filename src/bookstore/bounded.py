"""A mapping that forgets its least recently stored entries past a bound.

Bounded by entry count; a byte bound can be added by passing `size_of` (the cost
of one entry) and `max_bytes`. Storing a key (new or not) makes it the newest;
reading does not.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, MutableMapping
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedMapping(MutableMapping[K, V]):
    """At most `max_items` entries (and `max_bytes` by `size_of`); the oldest go first."""

    def __init__(
        self,
        max_items: int,
        *,
        size_of: Callable[[K, V], int] | None = None,
        max_bytes: int | None = None,
    ) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be at least 1, got {max_items}")
        if (size_of is None) != (max_bytes is None):
            raise ValueError("size_of and max_bytes go together")
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._size_of = size_of
        self._items: OrderedDict[K, V] = OrderedDict()
        self._bytes = 0
        self.evicted = 0

    @property
    def bytes(self) -> int:
        """The summed `size_of` of the entries held (0 without a byte bound)."""
        return self._bytes

    def __getitem__(self, key: K) -> V:
        return self._items[key]

    def __setitem__(self, key: K, value: V) -> None:
        if key in self._items:
            self._forget(key)
        self._items[key] = value
        self._bytes += self._cost(key, value)
        self._evict()

    def __delitem__(self, key: K) -> None:
        if key not in self._items:
            raise KeyError(key)
        self._forget(key)

    def __iter__(self) -> Iterator[K]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def _cost(self, key: K, value: V) -> int:
        return 0 if self._size_of is None else self._size_of(key, value)

    def _forget(self, key: K) -> None:
        value = self._items.pop(key)
        self._bytes -= self._cost(key, value)

    def _over(self) -> bool:
        if len(self._items) > self.max_items:
            return True
        return self.max_bytes is not None and self._bytes > self.max_bytes and len(self._items) > 1

    def _evict(self) -> None:
        while self._over():
            oldest = next(iter(self._items))
            self._forget(oldest)
            self.evicted += 1
