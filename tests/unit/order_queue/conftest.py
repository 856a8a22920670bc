from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from queue_fakes import FakeClock

from bookstore.order_queue.store import QueueStore


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "order-queue" / "queue.db"


@pytest.fixture
async def store(db_path: Path, clock: FakeClock) -> AsyncIterator[QueueStore]:
    s = QueueStore(db_path, lease_s=2.0, failure_timeout_s=0.5, clock=clock)
    await s.open()
    yield s
    await s.close()
