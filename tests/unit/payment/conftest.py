from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import pytest
from payment_harness import Queue

from bookstore import grpcutil
from bookstore.order_queue.service import create_server as create_queue_server
from bookstore.order_queue.store import QueueStore
from bookstore.payment.ledger import Ledger
from bookstore.payment.service import PaymentServicer, create_server
from bookstore.pb import payment_pb2_grpc, queue_pb2_grpc


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "payment" / "ledger.db"


@pytest.fixture
def fatal() -> list[BaseException]:
    """The storage failures the servicer reported as fatal (it would stop)."""
    return []


@pytest.fixture
async def servicer(ledger_path: Path, fatal: list[BaseException]) -> AsyncIterator[PaymentServicer]:
    s = PaymentServicer(Ledger(ledger_path), on_fatal=fatal.append)
    yield s
    await s.close()


@pytest.fixture
def commits(servicer: PaymentServicer, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every ledger transaction (one fsync each) from now on."""
    sizes: list[int] = []
    run_batch = servicer.ledger.run_batch

    def counting(writes: list[Callable[[], Any]]) -> list[Any]:
        sizes.append(len(writes))
        return run_batch(writes)

    monkeypatch.setattr(servicer.ledger, "run_batch", counting)
    return sizes


@pytest.fixture
async def stub(servicer: PaymentServicer) -> AsyncIterator[payment_pb2_grpc.PaymentAsyncStub]:
    server, _, port = create_server("127.0.0.1:0", servicer)
    await server.start()
    channel = grpcutil.channel(f"127.0.0.1:{port}")
    try:
        yield cast("payment_pb2_grpc.PaymentAsyncStub", payment_pb2_grpc.PaymentStub(channel))
    finally:
        await channel.close()
        await server.stop(None)


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[Queue]:
    store = QueueStore(tmp_path / "queue.db")
    await store.open()
    server, _, port = create_queue_server("127.0.0.1:0", store)
    await server.start()
    channel = grpcutil.channel(f"127.0.0.1:{port}")
    try:
        stub = cast("queue_pb2_grpc.OrderQueueAsyncStub", queue_pb2_grpc.OrderQueueStub(channel))
        yield Queue(store, server, stub)
    finally:
        await channel.close()
        await server.stop(None)
        await store.close()
