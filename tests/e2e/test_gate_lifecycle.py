"""End to end: the orchestrator's gate (the process on the public port) lives and dies
with the orchestrator's app, and the launcher starts both again either way."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from checkout_requests import course_page_request
from harness import System, alive, children, start_system

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    with start_system() as running:
        yield running


def gate_of(app: int) -> int:
    """The pid of the gate process the orchestrator's app `app` started."""
    started = children(app)
    gates = [
        child
        for child in started
        if b"bookstore.orchestrator.gate" in Path(f"/proc/{child}/cmdline").read_bytes()
    ]
    assert len(gates) == 1, started
    return gates[0]


def approved_again(system: System, timeout: float = 30.0) -> None:
    """Until the shop answers a checkout, approved."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            answer = httpx.post(
                system.base_url + "/checkout", json=course_page_request(), timeout=10.0
            )
            if answer.status_code == 200 and answer.json()["status"] == "Order Approved":
                return
            last = answer.text
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"no approved checkout within {timeout} s: {last}")


def test_a_killed_app_takes_its_gate_with_it_and_both_start_again(system: System) -> None:
    approved_again(system)
    app = system.pid("orchestrator")
    gate = gate_of(app)
    [private] = Path(tempfile.gettempdir()).glob(f"bookstore-orchestrator-{app}-*")
    os.kill(app, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while alive(gate) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(gate), "the gate outlived its app"
    new_app = system.wait_restarted("orchestrator", app)
    approved_again(system)
    assert gate_of(new_app) != gate
    assert not private.exists(), "the killed app's private directory was left behind"


def test_a_killed_gate_stops_its_app_and_both_start_again(system: System) -> None:
    approved_again(system)
    app = system.pid("orchestrator")
    os.kill(gate_of(app), signal.SIGKILL)
    new_app = system.wait_restarted("orchestrator", app)
    assert not alive(app), "the app went on without its gate"
    approved_again(system)
    assert alive(gate_of(new_app))
    assert "the gate ended" in system.log()
