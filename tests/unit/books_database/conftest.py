"""Fixtures: three books-database replicas on loopback and a client of them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from loopback_cluster import WAIT_S, Cluster

from bookstore.books_database.client import BooksDatabaseClient


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path)
    for i in (1, 2, 3):
        await c.start(i)
    try:
        yield c
    finally:
        for i in list(c.replicas):
            await c.kill(i)


@pytest.fixture
async def client(cluster: Cluster) -> AsyncIterator[BooksDatabaseClient]:
    db = BooksDatabaseClient(cluster.addresses, deadline_s=WAIT_S)
    try:
        yield db
    finally:
        await db.close()
