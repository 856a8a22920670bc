"""Fakes for the orchestrator's pipeline and execution tracker, and a client on the app."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from orchestrator_fakes import FakeCluster, FakePipeline, FakeStock, FakeTracker

from bookstore.orchestrator.app import create_app
from bookstore.orchestrator.store import OrderStore
from bookstore.settings import Settings


@pytest.fixture
def settings() -> Settings:
    return Settings(
        execution_wait_s=0.2,
        checkout_timeout_s=1.0,
        rpc_timeout_s=0.2,
        enqueue_retry_s=0.3,
    )


@pytest.fixture
def pipeline() -> FakePipeline:
    return FakePipeline()


@pytest.fixture
def tracker() -> FakeTracker:
    return FakeTracker()


@pytest.fixture
def stock() -> FakeStock:
    return FakeStock()


@pytest.fixture
def store() -> OrderStore:
    return OrderStore(1000)


@pytest.fixture
async def client(
    settings: Settings,
    pipeline: FakePipeline,
    tracker: FakeTracker,
    store: OrderStore,
    stock: FakeStock,
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, pipeline, tracker, store=store, stock=stock, cluster=FakeCluster())
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://orchestrator") as c:
        yield c
