"""What the app's components share: a start and a close (their lifespan), bounded waits."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class Component(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...


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
