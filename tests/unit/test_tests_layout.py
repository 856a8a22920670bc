"""Unit and integration tests use no end-to-end helper (see tests/README.md)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
SLOW = ("e2e", "browser", "netns")


def _imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
    return names


def test_no_unit_or_integration_test_imports_an_end_to_end_helper() -> None:
    slow_helpers = {p.stem for folder in SLOW for p in (TESTS / folder).glob("*.py")}
    assert {"harness", "queue_harness"} <= slow_helpers
    fast = [p for folder in ("unit", "integration") for p in (TESTS / folder).rglob("*.py")]
    assert len(fast) > 20
    wrong = sorted(
        f"{path.relative_to(TESTS)} imports {name}"
        for path in fast
        for name in _imported(path) & slow_helpers
    )
    assert not wrong, wrong


def test_no_two_test_modules_share_a_name() -> None:
    """pytest imports test modules by their base name (no packages here): two files
    with one name in different folders cannot be collected in one run."""
    tests = Path(__file__).resolve().parents[1]
    names = [p.name for p in tests.rglob("test_*.py")]
    assert sorted(n for n in set(names) if names.count(n) > 1) == []
