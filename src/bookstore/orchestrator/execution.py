"""The orchestrator's link to the order queue and the executors.

INTERFACE (filled in by the queue-and-executors work).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bookstore.settings import Settings


@dataclass(frozen=True)
class QueuedItem:
    book_id: str
    title: str
    quantity: int


@dataclass(frozen=True)
class ExecutionInfo:
    state: str  # "queued" | "leased" | "executed"
    executor: int | None = None
    epoch: int | None = None
    sequence: int | None = None
    executed_at: str | None = None  # RFC 3339


class ExecutionTracker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def start(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def enqueue(self, order_id: str, items: list[QueuedItem], customer_name: str) -> None:
        """Returns once the queue has the order on disk; raises ServiceUnavailable."""
        raise NotImplementedError

    async def wait_executed(self, order_id: str, timeout: float) -> ExecutionInfo | None:
        """The execution record, or None if not executed within `timeout` (no busy wait)."""
        raise NotImplementedError

    async def status(self, order_id: str) -> ExecutionInfo | None:
        raise NotImplementedError

    async def cluster(self) -> dict[str, Any]:
        """{"queue": {...}, "executors": [...], "leader": {...}|None, "elections": [...]}"""
        raise NotImplementedError
