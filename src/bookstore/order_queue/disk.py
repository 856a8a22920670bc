"""The queue's file behind one database thread and one group commit.

Every write goes through the group commit (`bookstore.group_commit`): the
writes that arrive while a transaction is on its way to disk are committed
together in the next one (at most `group_commit_max`, but the writes handed
over together always share a transaction), on the database thread, one fsync
for all. A commit that fails is fatal (`on_fatal`): the process stops rather
than acknowledge anything it could not make durable. A full disk is the one
exception (see `db._is_disk_full`): the batch is refused with DiskFull, reads
go on, and writes succeed again once there is space.

Retention: every `sweep_interval_s` the orders executed more than
`retention_s` ago are deleted, in small transactions between the other writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from bookstore.group_commit import GroupCommit
from bookstore.order_queue.db import Database, DiskFull, Loaded, Op, StorageFailure, wall_now
from bookstore.timestamps import utc_iso

log = logging.getLogger(__name__)
T = TypeVar("T")

SWEEP_CHUNK = 500  # orders deleted per transaction by the retention sweep


def stop_process(exc: BaseException) -> None:
    log.critical("queue storage failed, stopping: %s", exc)
    os._exit(70)


def raised(outcome: Any) -> Any:
    """A write's outcome: its result, or its refusal raised."""
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


class QueueDisk:
    def __init__(
        self,
        path: Path,
        *,
        group_commit_max: int = 256,
        retention_s: float = 24 * 3600.0,
        sweep_interval_s: float = 60.0,
        wall_clock: Callable[[], datetime] = wall_now,
        on_fatal: Callable[[BaseException], None] = stop_process,
    ) -> None:
        self.path = path
        self.retention_s = retention_s
        self.sweep_interval_s = sweep_interval_s
        self.wall_clock = wall_clock
        self.on_fatal = on_fatal
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="queue-db")
        self.db: Database | None = None
        self._commits: GroupCommit[Op, Any] = GroupCommit(
            self._commit, max_batch=max(1, group_commit_max)
        )
        self._sweeper: asyncio.Task[None] | None = None
        self.swept = 0  # orders the retention sweep deleted since open
        self.disk_full = False  # the last write found no space
        self.failed: BaseException | None = None
        self.commits = 0  # transactions committed (each one fsync)

    async def open(self) -> Loaded:
        """Everything the file holds: the epoch, its leader and the queued orders."""
        self.db = await self.read(Database, self.path, self.wall_clock)
        loaded = await self.read(self.db.load)
        if self.sweep_interval_s > 0:
            self._sweeper = asyncio.create_task(self._sweep_loop(), name="queue-sweeper")
        return loaded

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        await self._commits.close()
        if self.db is not None:
            await self.read(self.db.close)
            self.db = None
        self._thread.shutdown(wait=True)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on the database thread."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def write_all(self, ops: Sequence[Op]) -> list[Any]:
        """Each op's result or refusal (a QueueError), once the transaction holding
        them all is on disk. DiskFull or StorageFailure: none of them was written."""
        if not ops:
            return []
        if self.failed is not None or self.db is None:
            raise StorageFailure(str(self.failed or "the queue is closed"))
        return await self._commits.submit(ops)

    async def write(self, op: Op) -> Any:
        (outcome,) = await self.write_all([op])
        return raised(outcome)

    async def _commit(self, ops: list[Op]) -> list[Any]:
        """One transaction of the group commit."""
        if self.failed is not None or self.db is None:
            raise StorageFailure(str(self.failed or "the queue is closed"))
        try:
            results = await self.read(self.db.run_batch, ops)
        except DiskFull as exc:
            if not self.disk_full:
                log.error("queue writes refused until there is space: %s", exc)
            self.disk_full = True
            raise
        except Exception as exc:
            self.failed = exc
            self.on_fatal(exc)
            raise StorageFailure(str(exc)) from exc
        self.commits += 1
        if self.disk_full:
            self.disk_full = False
            log.warning("queue writes succeed again: the disk has space")
        return results

    # -- retention ----------------------------------------------------------------

    async def sweep(self) -> int:
        """Delete the orders executed more than `retention_s` ago; how many."""
        cutoff = self.wall_clock() - timedelta(seconds=self.retention_s)
        before = utc_iso(cutoff.timestamp())
        total = 0
        while True:
            n: int = await self.write(lambda db: db.sweep(before, SWEEP_CHUNK))
            total += n
            if n < SWEEP_CHUNK:
                break
        self.swept += total
        if total:
            log.info("retention sweep deleted=%d executed_before=%s", total, before)
        return total

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval_s)
            try:
                await self.sweep()
            except DiskFull:
                continue  # deleting needs log space too: next time
            except StorageFailure:
                return  # fatal, handled by the commit
