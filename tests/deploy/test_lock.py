"""uv.lock: the exact versions every install takes, in step with pyproject.toml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _check(project: Path, *, offline: bool = True) -> subprocess.CompletedProcess[str]:
    """`uv lock --check` on a project folder: fails if its lock does not match.

    A lock that matches is checked offline, as scripts/lint does. A mismatch is checked
    with PyPI reachable: offline, uv may first try to resolve the changed requirements
    for every Python the project allows and fail on a wheel missing from its cache,
    which would hide the message about the lock."""
    flags = ["--offline"] if offline else []
    return subprocess.run(
        [sys.executable, "-m", "uv", "lock", "--check", *flags, "--project", str(project)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _copy(tmp_path: Path) -> Path:
    for name in ("pyproject.toml", "uv.lock", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def test_the_lock_matches_pyproject(tmp_path: Path) -> None:
    result = _check(_copy(tmp_path))
    assert result.returncode == 0, result.stderr


def test_a_dependency_missing_from_the_lock_fails_the_check(tmp_path: Path) -> None:
    project = _copy(tmp_path)
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    assert '"orjson>=' in text
    assert 'name = "six"' not in (project / "uv.lock").read_text()
    pyproject.write_text(text.replace('"orjson>=', '"six", "orjson>=', 1))
    result = _check(project, offline=False)
    assert result.returncode != 0
    assert "needs to be updated" in result.stderr and "added: six" in result.stderr


def test_a_range_the_locked_version_leaves_fails_the_check(tmp_path: Path) -> None:
    project = _copy(tmp_path)
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    assert '"orjson>=3.10,<4"' in text
    pyproject.write_text(text.replace('"orjson>=3.10,<4"', '"orjson<3"'))
    result = _check(project, offline=False)
    assert result.returncode != 0
    assert "needs to be updated" in result.stderr and "orjson<3" in result.stderr


def test_every_install_takes_the_lock() -> None:
    install = (ROOT / "scripts" / "install").read_text()
    assert "uv sync" in install and "--locked" in install
    assert "pip install -e" not in install and "pip install ." not in install
    for door in ("run", "test"):
        assert "scripts/install" in (ROOT / "scripts" / door).read_text(), door
    assert "scripts/test" in (ROOT / ".ci" / "run").read_text()
    assert "scripts/install" in (ROOT / "Dockerfile").read_text()
