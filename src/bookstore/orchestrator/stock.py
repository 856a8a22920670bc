"""The orchestrator's window on the books database: live stock for GET /api/books.

The stock read is the database's linearizable one (answered by the primary), bounded
by STOCK_DEADLINE_S: the catalogue must answer even when the database cannot, and then
says the stock is unknown instead of showing a stale or invented number.
"""

from __future__ import annotations

import logging

from bookstore import grpcutil
from bookstore.books_database.client import BooksDatabaseClient
from bookstore.settings import Settings

log = logging.getLogger(__name__)

STOCK_DEADLINE_S = 0.5  # the whole read, redirects to the primary included


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
