"""Fixtures for the deployment files: the rendered Compose and Kubernetes configs."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_SOURCE = ROOT / "src" / "bookstore" / "settings.py"
_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$")


def require_tool(name: str) -> str:
    """The tool's path; a missing tool fails the test (it is never skipped)."""
    path = shutil.which(name)
    if path is None:
        where = "CI" if os.environ.get("CI") == "true" else "this machine"
        pytest.fail(f"{name} is not installed on {where}: run scripts/install --dev")
    return path


def _run(args: list[str], env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"{' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result.stdout


@pytest.fixture(scope="session")
def settings_env_names() -> frozenset[str]:
    """Every environment variable name src/bookstore/settings.py reads."""
    tree = ast.parse(SETTINGS_SOURCE.read_text())
    names = {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and _ENV_NAME.match(node.value)
    }
    assert "ORDER_QUEUE_ADDRESS" in names  # the parse found the settings
    return frozenset(names)


@pytest.fixture(scope="session")
def compose_rendered() -> dict[str, Any]:
    """compose.yaml as `docker-compose config` resolves it, every profile included."""
    tool = require_tool("docker-compose")
    # No real key in the rendered file, whatever this shell holds.
    env = {**os.environ, "GEMINI_API_KEY": "", "BOOKSTORE_LOG_LEVEL": ""}
    env.pop("COMPOSE_FILE", None)
    text = _run([tool, "-f", "compose.yaml", "config"], env=env)
    config = yaml.safe_load(text)
    assert isinstance(config, dict)
    return config


@pytest.fixture(scope="session")
def compose_config(compose_rendered: dict[str, Any]) -> dict[str, Any]:
    """compose.yaml's bookstore services: without the services of optional profiles
    (observability) and the one-shot `certs` (tests/deploy/test_compose_file.py
    checks it apart)."""
    services = compose_rendered["services"]
    return {
        **compose_rendered,
        "services": {
            name: s for name, s in services.items() if not s.get("profiles") and name != "certs"
        },
    }


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_tool("promtool")


@pytest.fixture(scope="session")
def k8s_objects() -> list[dict[str, Any]]:
    """Every object `kubectl kustomize deploy/base` renders."""
    tool = require_tool("kubectl")
    text = _run([tool, "kustomize", "deploy/base"])
    objects = [doc for doc in yaml.safe_load_all(text) if doc]
    assert objects, "kustomize rendered nothing"
    return objects


@pytest.fixture
def fake_bookstore(tmp_path: Path) -> Iterator[Path]:
    """A directory whose `bookstore` prints its arguments instead of serving."""
    script = tmp_path / "bookstore"
    script.write_text('#!/bin/sh\necho "$@"\n')
    script.chmod(0o755)
    yield tmp_path
