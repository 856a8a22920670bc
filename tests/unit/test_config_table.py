"""README's configuration table is the one scripts/config_table.py generates from settings.py."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from types import ModuleType

from bookstore.settings import Settings, from_env

ROOT = Path(__file__).resolve().parents[2]
FIX = ".venv/bin/python scripts/config_table.py --write"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("config_table", ROOT / "scripts/config_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_holds_the_generated_table() -> None:
    script = _script()
    readme = (ROOT / "README.md").read_text()
    expected = script.in_readme(readme, script.table())
    assert readme == expected, f"README's configuration table is stale: run `{FIX}`"


def test_every_setting_has_a_row_naming_a_variable_that_sets_it() -> None:
    rows = _script().rows()
    assert len(rows) == len(dataclasses.fields(Settings))
    by_variable = {variables.split(" / ")[0]: default for variables, default, _ in rows}
    assert by_variable["BOOKSTORE_RPC_TIMEOUT_S"] == "2"
    assert from_env({"BOOKSTORE_RPC_TIMEOUT_S": "7"}).rpc_timeout_s == 7.0
    assert by_variable["ORDER_EXECUTOR_ADDRESSES"].startswith("1=127.0.0.1:50055,")
    assert by_variable["GEMINI_API_KEY"] == "unset"
