"""Group commit: writes that arrive while a commit runs are committed together in the next.

One commit runs at a time. A caller hands over its writes (`submit`: one unit,
never split across commits) and awaits their outcomes. Whatever is submitted
while a commit runs waits, and the next commit takes all of it (at most
`max_batch` writes; a larger unit goes alone) in one call of `commit`, which
makes the whole batch durable at once (one transaction, one fsync) and returns
one outcome per write: its result, or the exception that refused that write
alone. Only then is each caller's future resolved. There is no timer: a lone
write is committed at once, so an idle system pays no latency, and under load
the batches grow by themselves (as `batching.Coalescer` does for calls).

An exception raised by `commit` fails exactly the writes of its batch; the
next batch is tried afresh. Whether a failure is fatal is the caller's to say
(its `commit` knows its storage). A caller that stops waiting does not take
its writes back: they are committed with their batch.

The order queue commits its SQLite transactions through one, payment its
ledger's, and each books-database replica its loop turns.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

W = TypeVar("W")  # a write, as the commit function takes it
R = TypeVar("R")  # a write's result

Commit = Callable[[list[W]], Awaitable[Sequence[R | Exception]]]


@dataclass
class _Unit(Generic[W, R]):
    writes: list[W]
    done: asyncio.Future[list[R | Exception]]


class GroupCommit(Generic[W, R]):
    """Concurrent writes become batches of `commit`, one batch at a time."""

    def __init__(self, commit: Commit[W, R], *, max_batch: int) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._commit = commit
        self.max_batch = max_batch
        self._waiting: deque[_Unit[W, R]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.batches = 0  # calls of `commit`, for tests and benchmarks
        self.writes = 0  # writes in them

    def submit(self, writes: Sequence[W]) -> asyncio.Future[list[R | Exception]]:
        """Hand `writes` over as one unit: the future holds each one's outcome, in
        order, once their commit is durable (or the commit's exception)."""
        if self._closed:
            raise RuntimeError("the group commit is closed")
        loop = asyncio.get_running_loop()
        unit: _Unit[W, R] = _Unit(list(writes), loop.create_future())
        if not unit.writes:
            unit.done.set_result([])
            return unit.done
        self._waiting.append(unit)
        if self._task is None:
            self._task = loop.create_task(self._run(), name="group-commit")
        return unit.done

    async def write(self, write: W) -> R:
        """One write's result once it is durable (its refusal is raised)."""
        (outcome,) = await self.submit([write])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def _run(self) -> None:
        try:
            while self._waiting:
                await self._commit_batch(self._next_batch())
        finally:
            self._task = None

    def _next_batch(self) -> list[_Unit[W, R]]:
        batch = [self._waiting.popleft()]
        size = len(batch[0].writes)
        while self._waiting and size + len(self._waiting[0].writes) <= self.max_batch:
            unit = self._waiting.popleft()
            batch.append(unit)
            size += len(unit.writes)
        return batch

    async def _commit_batch(self, batch: list[_Unit[W, R]]) -> None:
        writes = [write for unit in batch for write in unit.writes]
        self.batches += 1
        self.writes += len(writes)
        try:
            outcomes = list(await self._commit(writes))
            if len(outcomes) != len(writes):
                raise RuntimeError(f"{len(outcomes)} outcomes for {len(writes)} writes")
        except Exception as exc:  # the batch failed: each of its writes hears why
            for unit in batch:
                if not unit.done.done():  # its caller may have stopped waiting
                    unit.done.set_exception(exc)
            return
        start = 0
        for unit in batch:
            end = start + len(unit.writes)
            if not unit.done.done():
                unit.done.set_result(outcomes[start:end])
            start = end

    async def close(self) -> None:
        """Commit everything submitted so far; refuse any later write."""
        self._closed = True
        if self._task is not None:
            await asyncio.shield(self._task)
