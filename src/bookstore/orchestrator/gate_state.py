"""What the orchestrator's app and its gate (`orchestrator/gate.py`) share: a small
file, mapped into both processes.

The app owns the admission limit (`admission.AdaptiveLimit`) and writes the limit and
the checkouts in flight here after every change. The gate reads them to refuse a
checkout beyond the limit itself, and writes back what it refused: a count and the
refusals' summed time. The app folds those into its metrics (`gate_link.GateLink`),
so `/metrics` counts every refusal wherever it was answered. Written once by the app:
the refusal the gate sends (the app's own 503 BUSY, as bytes on the wire) and the
token that marks the gate's `x-bookstore-peer` header as the gate's.

Each field has one writer; the 8-byte fields are written and read whole.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

# limit, in flight (the app's); refused, refused time in ns (the gate's); token; answer
_COUNTS = struct.Struct("<qqQQ")
_LIMITS = struct.Struct("<qq")
_REFUSALS = struct.Struct("<QQ")
_TOKEN_AT = _COUNTS.size
_TOKEN_BYTES = 32  # the hex of 16 random bytes
_LENGTH = struct.Struct("<Q")
_ANSWER_AT = _TOKEN_AT + _TOKEN_BYTES + _LENGTH.size
PEER_HEADER = b"x-bookstore-peer"


class GateState:
    """The shared file at `path`, mapped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with open(path, "r+b") as file:
            self._map = mmap.mmap(file.fileno(), 0)

    @classmethod
    def create(cls, path: Path, answer: bytes, limit: int) -> GateState:
        """A new file at `path` (owner only): a fresh token, the `answer` the gate
        sends, `limit` and none in flight."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(_LIMITS.pack(limit, 0) + _REFUSALS.pack(0, 0))
            file.write(os.urandom(16).hex().encode() + _LENGTH.pack(len(answer)) + answer)
        return cls(path)

    @property
    def token(self) -> bytes:
        return bytes(self._map[_TOKEN_AT : _TOKEN_AT + _TOKEN_BYTES])

    @property
    def answer(self) -> bytes:
        (length,) = _LENGTH.unpack_from(self._map, _TOKEN_AT + _TOKEN_BYTES)
        return bytes(self._map[_ANSWER_AT : _ANSWER_AT + length])

    # the app's side
    def publish(self, limit: int, in_flight: int) -> None:
        _LIMITS.pack_into(self._map, 0, limit, in_flight)

    def refusals(self) -> tuple[int, float]:
        """What the gate refused so far: how many, and their summed time (seconds)."""
        count, nanos = _REFUSALS.unpack_from(self._map, _LIMITS.size)
        return count, nanos / 1e9

    # the gate's side
    def full(self, forwarded: int = 0) -> bool:
        """As many checkouts in flight as the limit admits: the app's count, or the
        gate's (`forwarded`: sent to the app and not answered yet), the higher."""
        limit, in_flight = _LIMITS.unpack_from(self._map, 0)
        return bool(max(in_flight, forwarded) >= limit)

    def refused(self, seconds: float) -> None:
        count, nanos = _REFUSALS.unpack_from(self._map, _LIMITS.size)
        _REFUSALS.pack_into(self._map, _LIMITS.size, count + 1, nanos + int(seconds * 1e9))

    def close(self) -> None:
        self._map.close()
