"""bench/goodput.py reads its trees and plans its runs interleaved (each scenario for
every tree in turn, round after round), starting nothing with --plan; a tree whose
`src` is not where `python -m bookstore` would import from is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "goodput.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_plan_interleaves_the_trees_round_after_round() -> None:
    done = _run(
        "--tree",
        f"a={ROOT}",
        "--tree",
        f"b={ROOT}:ORCHESTRATOR_GATE=off:X=1",
        "--rounds",
        "2",
        "--only",
        "bursts,flood",
        "--bursts",
        "15",
        "--plan",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"{unit}, round {r}, {tree}"
        for unit in ("burst 15", "flood")
        for r in (1, 2)
        for tree in ("a", "b")
    ]
    assert "ORCHESTRATOR_GATE=off X=1" in done.stderr
    assert f"bookstore from {ROOT / 'src' / 'bookstore'}" in done.stderr


def test_a_tree_without_the_package_is_refused(tmp_path: Path) -> None:
    done = _run("--tree", f"empty={tmp_path}", "--plan")
    assert done.returncode != 0
    assert "tree empty" in done.stderr


def test_a_malformed_tree_or_scenario_is_a_usage_error() -> None:
    for args in (["--tree", "no-path"], ["--tree", "a=/x:NOVALUE"], ["--only", "nonsense"]):
        done = _run(*args, "--plan")
        assert done.returncode == 2, args
        assert "usage:" in done.stderr
