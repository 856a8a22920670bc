"""The orchestrator's window on the books database: live stock for GET /api/books and
an order's replication events for GET /orders/{id}/replication.

The stock read is the database's linearizable one (answered by the primary), bounded
by STOCK_DEADLINE_S: the catalogue must answer even when the database cannot, and then
says the stock is unknown instead of showing a stale or invented number. An order's
replication events come from every replica that answers (each records its own part).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

from bookstore import grpcutil
from bookstore.books_database.client import BooksDatabaseClient
from bookstore.books_database.trail import TrailEvent
from bookstore.settings import Settings

log = logging.getLogger(__name__)

STOCK_DEADLINE_S = 0.5  # the whole read, redirects to the primary included


# The order of an operation's steps at one log position.
STEP_ORDER = {"appended": 0, "stored": 1, "acked": 2, "applied": 3}


@dataclass(frozen=True)
class Replication:
    """An order's replication steps (see books_database.trail), in log order;
    `answered`: the replicas that did."""

    answered: tuple[int, ...]
    steps: tuple[TrailEvent, ...]


class StockSource(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def available(self) -> dict[str, int] | None:
        """Copies that can be ordered (stock - reserved) by book id; None: unknown."""
        ...

    async def replication(self, order_id: str) -> Replication:
        """What every replica that answers did with the order's operations."""
        ...


class DatabaseStock:
    """The books database's available copies, through its client."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: BooksDatabaseClient | None = None

    async def start(self) -> None:
        self._client = BooksDatabaseClient(
            self.settings.books_database_addresses,
            deadline_s=STOCK_DEADLINE_S,
            rpc_timeout_s=STOCK_DEADLINE_S,
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def available(self) -> dict[str, int] | None:
        if self._client is None:
            return None
        try:
            books = await self._client.read_stock()
        except (grpcutil.ServiceUnavailable, grpcutil.Rejected) as exc:
            log.warning("stock unknown: %s", exc)
            return None
        return {book_id: s.available for book_id, s in books.items()}

    async def replication(self, order_id: str) -> Replication:
        if self._client is None:
            return Replication((), ())
        client = self._client
        found = await asyncio.gather(
            *(client.order_events(i, order_id) for i in client.ids), return_exceptions=True
        )
        answered = tuple(
            i for i, r in zip(client.ids, found, strict=True) if not isinstance(r, BaseException)
        )
        steps = [
            TrailEvent(e.replica_id, e.kind, e.index, e.view, e.op, e.peer)
            for events in found
            if not isinstance(events, BaseException)
            for e in events
        ]
        steps.sort(key=lambda s: (s.index, STEP_ORDER.get(s.kind, 9), s.replica_id, s.peer))
        return Replication(answered, tuple(steps))
