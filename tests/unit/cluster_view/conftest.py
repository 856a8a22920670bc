"""The orchestrator's app on fakes, its cluster view's state from a `FakeCluster`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from orchestrator_fakes import FakeCluster, FakePipeline, FakeStock, FakeTracker

from bookstore.orchestrator.app import create_app
from bookstore.orchestrator.store import OrderStore
from bookstore.settings import Settings


@pytest.fixture
def pipeline() -> FakePipeline:
    return FakePipeline()


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster()


@pytest.fixture
async def client(pipeline: FakePipeline, cluster: FakeCluster) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        Settings(),
        pipeline,
        FakeTracker(),
        store=OrderStore(100),
        stock=FakeStock(),
        cluster=cluster,
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://orchestrator") as c:
        yield c
