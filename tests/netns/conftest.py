"""Fixtures for the multi-host tests: root, the tools, and a lab that always cleans up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from netlab import Lab, close_lab, open_lab


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """A fresh switch; every namespace, link and process is removed afterwards."""
    made = open_lab(tmp_path)
    try:
        yield made
    finally:
        close_lab(made)
