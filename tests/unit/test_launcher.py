"""The launcher's supervision, with fake services: tiny shell scripts standing in
for `python -m bookstore serve NAME` (the launcher runs `<python> -m bookstore ...`)."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import stat
from pathlib import Path

import pytest

from bookstore.launcher import Launcher, LaunchError, ServiceSpec, services_of
from bookstore.settings import Settings


def fake_python(tmp_path: Path, body: str) -> str:
    """An executable that ignores its arguments and runs `body` (sh)."""
    script = tmp_path / "fake-python"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def _launcher(
    tmp_path: Path,
    body: str,
    out: io.StringIO,
    *,
    backoff_first_s: float = 0.5,
    backoff_cap_s: float = 10.0,
    backoff_reset_after_s: float = 30.0,
    stop_grace_s: float = 5.0,
) -> Launcher:
    specs = [
        ServiceSpec("suggestions", None, "127.0.0.1:1"),
        ServiceSpec("order-executor", 2, "127.0.0.1:2"),
    ]
    return Launcher(
        Settings(),
        out=out,
        python=fake_python(tmp_path, body),
        specs=specs,
        backoff_first_s=backoff_first_s,
        backoff_cap_s=backoff_cap_s,
        backoff_reset_after_s=backoff_reset_after_s,
        stop_grace_s=stop_grace_s,
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    return state != "Z"


def test_every_service_is_started_with_its_replica_id() -> None:
    specs = services_of(Settings())
    names = [s.name for s in specs]
    assert names == [
        "books-database-1",
        "books-database-2",
        "books-database-3",
        "transaction-verification",
        "fraud-detection",
        "suggestions",
        "order-queue",
        "payment",
        "order-executor-1",
        "order-executor-2",
        "order-executor-3",
        "order-executor-4",
        "orchestrator",
    ]
    assert specs[9].argv("py") == [
        "py", "-m", "bookstore", "serve", "order-executor", "--replica-id", "2"
    ]  # fmt: skip
    assert specs[-1].http and not specs[0].http


async def test_output_is_prefixed_per_service_and_a_dead_one_is_never_ready(
    tmp_path: Path,
) -> None:
    out = io.StringIO()
    launcher = _launcher(tmp_path, 'echo "hello from $6"; exec sleep 30', out)
    await launcher.start()
    try:
        with pytest.raises(LaunchError, match="order-executor-2, suggestions"):
            await launcher.wait_ready(timeout=0.5)
        pids = launcher.pids()
        assert set(pids) == {"suggestions", "order-executor-2"}
    finally:
        await launcher.stop()
    text = out.getvalue()
    assert "suggestions      | hello from" in text
    assert "order-executor-2 | hello from" in text
    assert f"launcher         | started suggestions pid={pids['suggestions']}" in text
    assert "\x1b[" not in text
    assert not any(_alive(p) for p in pids.values())


async def test_colour_prefixes_when_asked(tmp_path: Path) -> None:
    out = io.StringIO()
    launcher = _launcher(tmp_path, "echo hi; exec sleep 30", out)
    launcher.color = True
    await launcher.start()
    await asyncio.sleep(0.3)
    await launcher.stop()
    assert "\x1b[" in out.getvalue()


async def test_a_crashing_service_is_restarted_with_growing_back_off(tmp_path: Path) -> None:
    out = io.StringIO()
    launcher = _launcher(
        tmp_path, "exit 3", out, backoff_first_s=0.05, backoff_cap_s=0.2, backoff_reset_after_s=5
    )
    await launcher.start()
    await asyncio.sleep(1.2)
    await launcher.stop()
    restarts = launcher.restarts()
    # back-offs 0.05, 0.1, 0.2, 0.2, ... : a handful of restarts in 1.2 s, not dozens
    assert 3 <= restarts["suggestions"] <= 9, restarts
    text = out.getvalue()
    assert "suggestions exited with code 3" in text
    assert "restarting in 0.1 s" in text and "restarting in 0.2 s" in text


async def test_stop_kills_a_service_that_ignores_sigterm(tmp_path: Path) -> None:
    out = io.StringIO()
    launcher = _launcher(tmp_path, "trap '' TERM; sleep 30 & wait; sleep 30", out, stop_grace_s=0.3)
    await launcher.start()
    await asyncio.sleep(0.3)
    pids = launcher.pids()
    await launcher.stop()
    assert "ignored SIGTERM; killing them" in out.getvalue()
    assert not any(_alive(p) for p in pids.values())


async def test_a_killed_service_is_restarted(tmp_path: Path) -> None:
    out = io.StringIO()
    launcher = _launcher(tmp_path, "exec sleep 30", out, backoff_first_s=0.05)
    await launcher.start()
    old = launcher.pids()["suggestions"]
    os.kill(old, signal.SIGKILL)
    for _ in range(50):
        await asyncio.sleep(0.05)
        new = launcher.pids().get("suggestions")
        if new is not None and new != old:
            break
    await launcher.stop()
    assert new != old
    assert launcher.restarts()["suggestions"] == 1
    assert "suggestions exited with signal 9" in out.getvalue()
