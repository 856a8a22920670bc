"""The system under test for end-to-end tests: see harness.py."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from harness import System, start_system


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    """Every service on free ports with a temporary data dir, stopped after the module
    (the stop asserts no process survived)."""
    with start_system() as running:
        yield running


@pytest.fixture
def client(system: System) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=system.base_url, timeout=30.0) as c:
        yield c
