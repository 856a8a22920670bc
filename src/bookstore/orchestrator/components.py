"""What the routes run on: the pipeline and tracker interfaces, bounded waits, lifecycles."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol, TypeVar

from bookstore.orchestrator.execution import ExecutionInfo, QueuedItem
from bookstore.orchestrator.flow import Outcome
from bookstore.orchestrator.models import CheckoutRequest
from bookstore.orchestrator.pipeline import ServiceStats

log = logging.getLogger(__name__)

T = TypeVar("T")


class Component(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...


class CheckoutPipeline(Component, Protocol):
    async def run(self, order_id: str, request: CheckoutRequest) -> Outcome: ...
    async def stats(self) -> list[ServiceStats]: ...


class Tracker(Component, Protocol):
    async def enqueue(
        self,
        order_id: str,
        items: list[QueuedItem],
        customer_name: str,
        payment_token: str = "",
        amount_cents: int = 0,
    ) -> None: ...
    async def wait_executed(self, order_id: str, timeout: float) -> ExecutionInfo | None: ...
    async def status(self, order_id: str) -> ExecutionInfo | None: ...


async def bounded(awaitable: Awaitable[T], timeout: float) -> T | BaseException:
    """The result, or the exception (a TimeoutError past `timeout`) instead of raising it."""
    try:
        async with asyncio.timeout(timeout):
            return await awaitable
    except Exception as exc:
        return exc


def lifespan_of(
    owned: Sequence[Component],
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """A lifespan that starts `owned` in order and closes the started ones in reverse."""

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        started: list[Component] = []
        try:
            for component in owned:
                await component.start()
                started.append(component)
            yield
        finally:
            for component in reversed(started):
                try:
                    await component.close()
                except Exception:
                    log.exception("closing %s failed", type(component).__name__)

    return lifespan
