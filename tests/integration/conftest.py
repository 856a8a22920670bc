"""Fixtures: a cluster of the three checkout services in-process (see checkout_cluster)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from checkout_cluster import Cluster, start_cluster, stop_cluster


@pytest.fixture
async def cluster(caplog: pytest.LogCaptureFixture) -> AsyncIterator[Cluster]:
    caplog.set_level(logging.INFO)
    c = await start_cluster()
    try:
        yield c
    finally:
        await stop_cluster(c)
