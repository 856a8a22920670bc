"""bench/bench.py reads its trees and tracing choices before it starts anything: a
malformed one is a usage error, and a tree whose `src` is not where `python -m
bookstore` would import from is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "bench.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_malformed_tree_or_tracing_choice_is_a_usage_error() -> None:
    for args in (["--tree", "no-path"], ["--tree", "a=/x:NOVALUE"], ["--tracing", "some"]):
        done = _run(*args)
        assert done.returncode == 2, args
        assert "usage:" in done.stderr


def test_a_tree_without_the_package_is_refused(tmp_path: Path) -> None:
    done = _run("--tree", f"empty={tmp_path}")
    assert done.returncode != 0
    assert "tree empty" in done.stderr
