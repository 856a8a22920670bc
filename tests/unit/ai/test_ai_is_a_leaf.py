"""bookstore.ai stands below the services that use it: it imports none of them."""

from __future__ import annotations

import ast
from pathlib import Path

import bookstore.ai

ALLOWED = ("bookstore.ai", "bookstore.settings")


def _bookstore_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] == "bookstore"}


def test_the_ai_package_imports_only_itself_and_the_settings() -> None:
    package = Path(bookstore.ai.__file__).parent
    modules = sorted(package.glob("*.py"))
    assert len(modules) >= 5
    wrong = {
        f"{path.name}: {name}"
        for path in modules
        for name in _bookstore_imports(path)
        if not name.startswith(ALLOWED)
    }
    assert not wrong, sorted(wrong)
