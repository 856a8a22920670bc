"""The systems under test for end-to-end tests: see harness.py and queue_harness.py
(the shared `system` itself is in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from harness import System
from queue_harness import Cluster


@pytest.fixture
def client(system: System) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=system.base_url, timeout=30.0) as c:
        yield c


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """The order queue and the 4 executors as real processes (see queue_harness)."""
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        await c.close()
