from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest
from queue_fakes import FakeClock

from bookstore import grpcutil
from bookstore.order_queue.service import create_server
from bookstore.order_queue.store import QueueStore
from bookstore.pb import queue_pb2_grpc


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


@pytest.fixture
async def stub(store: QueueStore) -> AsyncIterator[queue_pb2_grpc.OrderQueueAsyncStub]:
    server, _, port = create_server("127.0.0.1:0", store)
    await server.start()
    channel = grpcutil.channel(f"127.0.0.1:{port}")
    try:
        yield cast("queue_pb2_grpc.OrderQueueAsyncStub", queue_pb2_grpc.OrderQueueStub(channel))
    finally:
        await channel.close()
        await server.stop(None)
