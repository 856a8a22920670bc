"""What a user installs, run as a user runs it.

`scripts/run` and the Dockerfile install the runtime package alone, from the lock
(`scripts/install` without `--dev`); the rest of the suite runs with the dev extras,
which would hide a runtime module importing a package only they bring. Here a fresh
environment gets exactly what a user gets, starts the whole system with `bookstore up`,
and the course page's order is approved and executed with no service restarted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from checkout_requests import course_page_request
from commitment_audit import Shop
from harness import System, launch

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def runtime_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A new environment made by `scripts/install` (runtime only); its interpreter."""
    venv = tmp_path_factory.mktemp("runtime") / "venv"
    result = subprocess.run(
        [str(ROOT / "scripts" / "install")],
        env={**os.environ, "BOOKSTORE_VENV": str(venv)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    python = str(venv / "bin" / "python")
    assert python != sys.executable
    return python


def test_the_runtime_install_has_no_dev_extra(runtime_python: str) -> None:
    listed = subprocess.run(
        [runtime_python, "-m", "uv", "pip", "list", "--python", runtime_python],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.lower()
    assert "bookstore" in listed and "grpcio " in listed
    for dev_only in ("pytest", "hypothesis", "playwright", "mypy", "ruff", "schemathesis"):
        assert f"{dev_only} " not in listed, dev_only
    located = subprocess.run(
        [runtime_python, "-c", "import bookstore; print(bookstore.__file__)"],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert str(ROOT / "src") not in located, "the runtime install is not the source tree"


@pytest.fixture(scope="module")
def installed_system(runtime_python: str) -> Iterator[System]:
    system = launch(python=runtime_python)
    try:
        yield system
    finally:
        survivors = system.stop()
        log = system.log()
        shutil.rmtree(system.data_dir, ignore_errors=True)
        assert not survivors, f"processes survived the launcher's stop: {survivors}"
        assert "all services stopped" in log


def test_the_course_order_is_approved_and_executed_with_no_restart(
    installed_system: System,
) -> None:
    with httpx.Client(base_url=installed_system.base_url, timeout=30.0) as client:
        # As the course page sends it: JSON without a Content-Type header.
        answer = client.post(
            "/checkout",
            content=httpx.Request("POST", "/", json=course_page_request()).content,
            headers={"content-type": "text/plain;charset=UTF-8"},
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["status"] == "Order Approved", body
    done = Shop(installed_system).finished(body["orderId"])
    assert done["execution"]["state"] == "executed", done
    log = installed_system.log()
    assert "restarting in" not in log, log[-4000:]
    assert "Traceback" not in log, log[-4000:]
