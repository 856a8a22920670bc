"""Test only (BOOKSTORE_TEST_CRASH_AT): an observer of the leader's two-phase
commits that SIGKILLs the leader at one point of the protocol, once per data
directory (a marker file), so that the next leader, started with the same
environment, recovers instead of crashing too. The points:

    after-prepare    every vote is in; the decision is not logged yet
    after-log        the decision is logged; no commit is sent yet
    between-commits  the books database has committed; payment's commit is not sent

Nothing in the protocol knows of it: `transaction.py` tells its `Observer` each
step, and this one is installed only when the setting names a point.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

from bookstore.commitment.coordinator import Kind
from bookstore.order_executor.transaction import BOOKS, PAYMENT, Observer, Step

log = logging.getLogger(__name__)

AFTER_PREPARE, AFTER_LOG, BETWEEN_COMMITS = "after-prepare", "after-log", "between-commits"
CRASH_POINTS = (AFTER_PREPARE, AFTER_LOG, BETWEEN_COMMITS)
# The points that kill before a message is sent: (point, the message's kind).
_BEFORE_SENDING = {(AFTER_PREPARE, Kind.LOG_DECISION), (AFTER_LOG, Kind.COMMIT)}
_PAYMENT_COMMIT, _BOOKS_COMMIT = (Kind.COMMIT, PAYMENT), (Kind.COMMIT, BOOKS)


def _sigkill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class CrashAt(Observer):
    def __init__(self, point: str, data_dir: Path, kill: Callable[[], None] = _sigkill) -> None:
        self.point = point if point in CRASH_POINTS else ""
        self.marker = data_dir / f"test-crash-{point}.done"
        self.kill = kill

    @property
    def armed(self) -> bool:
        return bool(self.point) and not self.marker.exists()

    async def sending(self, step: Step) -> None:
        if not self.armed:
            return
        if (self.point, step.kind) in _BEFORE_SENDING:
            self._fire(step)
        elif self.point == BETWEEN_COMMITS and (step.kind, step.participant) == _PAYMENT_COMMIT:
            await asyncio.Event().wait()  # held until the crash: the books database commits first

    async def answered(self, step: Step) -> None:
        books_committed = (step.kind, step.participant) == _BOOKS_COMMIT
        if self.armed and self.point == BETWEEN_COMMITS and books_committed:
            self._fire(step)

    def _fire(self, step: Step) -> None:
        self.marker.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.marker, os.O_CREAT | os.O_WRONLY, 0o600)
        os.fsync(fd)
        os.close(fd)
        log.warning("test crash at %s order=%s", self.point, step.order_id)
        self.kill()
