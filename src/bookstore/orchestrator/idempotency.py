"""Idempotency keys for POST /checkout, the way Stripe's API has them.

A client sends `Idempotency-Key: <up to 255 characters>` with a checkout. The first
request with a key runs; its answer is kept for 24 hours and given again, byte for
byte, to every later request with the same key and the same body (marked with
`Idempotent-Replayed: true`), so a retry after a lost answer places one order, not
two. A request that arrives while the first is still running waits for it. The same
key with a different body is refused (422). As at Stripe, an answer that says the
order was not placed (a 503: a service down, the shop busy) is not kept: the key is
free again and a retry runs afresh. A request refused before it ran (a 400) never
takes the key.

Keys are bounded in count and in bytes (the oldest go first), so keys cannot be used
to fill the orchestrator's memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.responses import Response

from bookstore.bounded import BoundedMapping
from bookstore.orchestrator.errors import JSON, ApiError

HEADER = "idempotency-key"
REPLAYED = "idempotent-replayed"  # the header on a replayed answer
MAX_KEY_CHARS = 255
KEPT_S = 24 * 3600.0


@dataclass(slots=True)
class _Entry:
    fingerprint: bytes
    created: float
    done: asyncio.Event = field(default_factory=asyncio.Event)
    answer: tuple[int, bytes] | None = None


def _size(key: str, entry: _Entry) -> int:
    return 160 + len(key) + len(entry.fingerprint) + (len(entry.answer[1]) if entry.answer else 0)


def fingerprint(canonical_body: bytes) -> bytes:
    """What tells two bodies apart: a digest of the request as parsed."""
    return hashlib.sha256(canonical_body).digest()


def checked_key(raw: str | None) -> str | None:
    """The header's key, or None without one; ApiError(400) for an unusable key."""
    if raw is None:
        return None
    if not raw or len(raw) > MAX_KEY_CHARS:
        raise ApiError(
            400, "INVALID_IDEMPOTENCY_KEY", f"Idempotency-Key: 1 to {MAX_KEY_CHARS} characters"
        )
    return raw


class IdempotencyKeys:
    """The answers given under each key, for `kept_s` seconds, bounded in count and bytes."""

    def __init__(
        self,
        max_keys: int,
        max_bytes: int,
        *,
        kept_s: float = KEPT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: BoundedMapping[str, _Entry] = BoundedMapping(
            max(1, max_keys), size_of=_size, max_bytes=max(1, max_bytes)
        )
        self._kept_s = kept_s
        self._clock = clock

    def __len__(self) -> int:
        return len(self._entries)

    async def answer(
        self, key: str, digest: bytes, run: Callable[[], Awaitable[Response]]
    ) -> Response:
        """The kept answer under `key`, or `run()`'s answer, kept when it is final."""
        while (entry := self._live(key)) is not None:
            if entry.fingerprint != digest:
                raise ApiError(
                    422,
                    "IDEMPOTENCY_KEY_REUSED",
                    "Idempotency-Key: this key was used with a different request body; "
                    "use a new key for a new order.",
                )
            if entry.answer is not None:
                status, body = entry.answer
                return Response(
                    body,
                    status_code=status,
                    media_type=JSON,
                    headers={REPLAYED: "true"},
                )
            await entry.done.wait()  # the first request is running: wait for its answer
        mine = _Entry(digest, self._clock())
        self._entries[key] = mine
        try:
            response = await run()
            if response.status_code < 500:
                mine.answer = (response.status_code, bytes(response.body))
            return response
        finally:
            if self._entries.get(key) is mine:
                if mine.answer is None:
                    del self._entries[key]
                else:
                    self._entries[key] = mine  # counts the answer's bytes
            mine.done.set()

    def _live(self, key: str) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and self._clock() - entry.created > self._kept_s:
            del self._entries[key]
            return None
        return entry
