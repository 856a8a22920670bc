from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest

from bookstore import grpcutil
from bookstore.payment.ledger import Ledger
from bookstore.payment.service import PaymentServicer, create_server
from bookstore.pb import payment_pb2_grpc


def no_fatal(exc: BaseException) -> None:
    raise AssertionError(f"storage failed: {exc}")


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "payment" / "ledger.db"


@pytest.fixture
async def servicer(ledger_path: Path) -> AsyncIterator[PaymentServicer]:
    s = PaymentServicer(Ledger(ledger_path), on_fatal=no_fatal)
    yield s
    await s.close()


@pytest.fixture
async def stub(servicer: PaymentServicer) -> AsyncIterator[payment_pb2_grpc.PaymentAsyncStub]:
    server, _, port = create_server("127.0.0.1:0", servicer)
    await server.start()
    channel = grpcutil.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield cast("payment_pb2_grpc.PaymentAsyncStub", payment_pb2_grpc.PaymentStub(channel))
    finally:
        await channel.close()
        await server.stop(None)
