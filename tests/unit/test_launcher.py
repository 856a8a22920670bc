"""The launcher's supervision, with fake services: tiny shell scripts standing in
for `python -m bookstore serve NAME` (the launcher runs `<python> -m bookstore ...`)."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from healthz import healthz_server

from bookstore.launcher import Launcher, LaunchError, ServiceSpec, services_of
from bookstore.settings import EXIT_CONFIG, Settings


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
    up_after_s: float = 10.0,
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
        # The readiness probe presents no certificate without TLS (there are none here).
        env={**os.environ, "BOOKSTORE_TLS": "off"},
        specs=specs,
        backoff_first_s=backoff_first_s,
        backoff_cap_s=backoff_cap_s,
        backoff_reset_after_s=backoff_reset_after_s,
        up_after_s=up_after_s,
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


async def _until(condition: Callable[[], bool]) -> None:
    """Until `condition()` holds (the suite's timeout is the backstop)."""
    # The launcher has no event for a restart: its counters are polled.
    while not condition():  # noqa: ASYNC110
        await asyncio.sleep(0.02)


async def test_a_crashing_service_that_came_up_is_restarted_with_growing_back_off(
    tmp_path: Path,
) -> None:
    out = io.StringIO()
    launcher = _launcher(
        tmp_path,
        "exit 3",
        out,
        backoff_first_s=0.05,
        backoff_cap_s=0.2,
        backoff_reset_after_s=5,
        up_after_s=0,  # every run counts as having come up: never given up
    )
    await launcher.start()
    await _until(lambda: launcher.restarts()["suggestions"] >= 4)
    await launcher.stop()
    assert launcher.failure is None
    text = out.getvalue()
    assert "suggestions exited with code 3" in text
    delays = re.findall(
        r"suggestions exited with code 3 after [\d.]+ s; restarting in ([\d.]+) s", text
    )
    assert delays[:4] == ["0.1", "0.1", "0.2", "0.2"]  # 0.05 (shown rounded), 0.1, 0.2, cap


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


# The fake service's arguments: -m bookstore serve NAME [--replica-id N]; $4 is NAME.
_SUGGESTIONS_FAILS = 'if [ "$4" = suggestions ]; then {failure}; fi; exec sleep 30'


async def test_a_configuration_error_at_start_up_is_given_up_at_once(tmp_path: Path) -> None:
    out = io.StringIO()
    failure = (
        "echo \"bookstore: configuration error: OTEL_EXPORTER_OTLP_PROTOCOL='x': no\" >&2;"
        f" exit {EXIT_CONFIG}"
    )
    launcher = _launcher(tmp_path, _SUGGESTIONS_FAILS.format(failure=failure), out)
    await launcher.start()
    try:
        with pytest.raises(LaunchError) as raised:
            await launcher.wait_ready(timeout=120)
        alive = launcher.pids()
    finally:
        await launcher.stop()
    assert str(raised.value) == (
        "suggestions stopped at start-up on a configuration error (code 78);"
        " its last lines of output:\n"
        "  bookstore: configuration error: OTEL_EXPORTER_OTLP_PROTOCOL='x': no"
    )
    assert launcher.restarts()["suggestions"] == 0
    assert set(alive) == {"order-executor-2"}  # the other one was never given up
    assert "suggestions exited with code 78 after" in out.getvalue()
    assert "not restarting it" in out.getvalue()


_TRACEBACK = (
    "echo 'Traceback (most recent call last):';"
    " echo '  File \"service.py\", line 3, in <module>';"
    ' echo "$(date +%H:%M:%S.%N | cut -c1-12) ERROR suggestions: about to fail";'
    " echo \"ImportError: cannot import name 'Ranker'\"; exit 1"
)


async def test_the_same_error_three_times_at_start_up_is_given_up(tmp_path: Path) -> None:
    out = io.StringIO()
    launcher = _launcher(
        tmp_path, _SUGGESTIONS_FAILS.format(failure=_TRACEBACK), out, backoff_first_s=0.05
    )
    await launcher.start()
    try:
        with pytest.raises(LaunchError) as raised:
            await launcher.wait_ready(timeout=120)
    finally:
        await launcher.stop()
    message = str(raised.value)
    assert message.startswith(
        "suggestions failed at start-up 3 times in a row with the same error (code 1);"
        " its last lines of output:\n  Traceback (most recent call last):\n"
    ), message
    assert message.endswith("\n  ImportError: cannot import name 'Ranker'")
    assert launcher.restarts()["suggestions"] == 2
    assert launcher.failure is raised.value


async def test_a_start_up_that_fails_differently_each_time_is_restarted(tmp_path: Path) -> None:
    out = io.StringIO()
    failure = 'echo "error in run $$"; exit 1'  # the pid: another error each run
    launcher = _launcher(
        tmp_path,
        _SUGGESTIONS_FAILS.format(failure=failure),
        out,
        backoff_first_s=0.05,
        backoff_cap_s=0.05,
    )
    await launcher.start()
    await _until(lambda: launcher.restarts()["suggestions"] >= 4)
    await launcher.stop()
    assert launcher.failure is None


async def test_a_service_reported_ready_is_restarted_however_it_fails_since(
    tmp_path: Path,
) -> None:
    # Its first run stays up (the probe finds the stand-in /healthz ready); every run
    # after it fails at once with the same error, and is restarted all the same.
    marker = tmp_path / "ran-once"
    body = (
        f"if [ -e {marker} ]; then echo 'OSError: the disk is gone'; exit 1; fi;"
        f" touch {marker}; exec sleep 30"
    )
    out = io.StringIO()
    with healthz_server() as (port, _):
        launcher = Launcher(
            Settings(),
            out=out,
            python=fake_python(tmp_path, body),
            env={**os.environ, "BOOKSTORE_TLS": "off"},
            specs=[ServiceSpec("orchestrator", None, f"127.0.0.1:{port}", http=True)],
            backoff_first_s=0.05,
            backoff_cap_s=0.05,
        )
        await launcher.start()
        try:
            await launcher.wait_ready(timeout=120)
            os.kill(launcher.pids()["orchestrator"], signal.SIGKILL)
            await _until(lambda: launcher.restarts()["orchestrator"] >= 4)
        finally:
            await launcher.stop()
    assert launcher.failure is None
    assert "orchestrator is ready on" in out.getvalue()
    assert out.getvalue().count("orchestrator exited with code 1") >= 3
