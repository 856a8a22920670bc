"""uv.lock: the exact versions every install takes, in step with pyproject.toml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _check(project: Path) -> subprocess.CompletedProcess[str]:
    """`uv lock --check` on a project folder: fails if its lock does not match."""
    return subprocess.run(
        [sys.executable, "-m", "uv", "lock", "--check", "--offline", "--project", str(project)],
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
    pyproject.write_text(text.replace('"orjson>=', '"a-package-the-lock-lacks", "orjson>=', 1))
    result = _check(project)
    assert result.returncode != 0
    assert "a-package-the-lock-lacks" in result.stderr


def test_a_range_the_locked_version_leaves_fails_the_check(tmp_path: Path) -> None:
    project = _copy(tmp_path)
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    assert '"orjson>=3.10,<4"' in text
    pyproject.write_text(text.replace('"orjson>=3.10,<4"', '"orjson<3"'))
    assert _check(project).returncode != 0


def test_every_install_takes_the_lock() -> None:
    install = (ROOT / "scripts" / "install").read_text()
    assert "uv sync" in install and "--locked" in install
    assert "pip install -e" not in install and "pip install ." not in install
    for door in ("run", "test"):
        assert "scripts/install" in (ROOT / "scripts" / door).read_text(), door
    assert "scripts/test" in (ROOT / ".ci" / "run").read_text()
    assert "scripts/install" in (ROOT / "Dockerfile").read_text()
