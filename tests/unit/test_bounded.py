from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bookstore.bounded import BoundedMapping


def test_the_least_recently_stored_entry_is_forgotten_first() -> None:
    recent: BoundedMapping[str, int] = BoundedMapping(2)
    recent["a"] = 1
    recent["b"] = 2
    recent["a"] = 3  # storing again makes "a" the newest
    recent["c"] = 4
    assert dict(recent) == {"a": 3, "c": 4}
    assert recent.evicted == 1


def test_reading_does_not_refresh() -> None:
    recent: BoundedMapping[str, int] = BoundedMapping(2)
    recent["a"] = 1
    recent["b"] = 2
    assert recent["a"] == 1
    recent["c"] = 3
    assert list(recent) == ["b", "c"]


def test_a_byte_bound_evicts_by_size() -> None:
    blobs: BoundedMapping[str, bytes] = BoundedMapping(
        100, size_of=lambda _k, v: len(v), max_bytes=10
    )
    blobs["a"] = b"12345"
    blobs["b"] = b"1234"
    assert blobs.bytes == 9
    blobs["c"] = b"123"
    assert list(blobs) == ["b", "c"] and blobs.bytes == 7
    del blobs["b"]
    assert blobs.bytes == 3


def test_a_single_entry_over_the_byte_bound_is_kept_alone() -> None:
    blobs: BoundedMapping[str, bytes] = BoundedMapping(
        10, size_of=lambda _k, v: len(v), max_bytes=2
    )
    blobs["a"] = b"1"
    blobs["big"] = b"12345"
    assert list(blobs) == ["big"]


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        BoundedMapping(0)
    with pytest.raises(ValueError):
        BoundedMapping(1, max_bytes=10)


@given(st.lists(st.tuples(st.integers(0, 20), st.binary(max_size=8))), st.integers(1, 6))
def test_bounds_hold_and_the_newest_entries_stay(
    writes: list[tuple[int, bytes]], limit: int
) -> None:
    mapping: BoundedMapping[int, bytes] = BoundedMapping(
        limit, size_of=lambda _k, v: len(v), max_bytes=16
    )
    for key, value in writes:
        mapping[key] = value
    assert len(mapping) <= limit
    assert mapping.bytes == sum(len(v) for v in mapping.values())
    assert mapping.bytes <= 16 or len(mapping) == 1
    if writes:
        key, value = writes[-1]
        assert mapping[key] == value
