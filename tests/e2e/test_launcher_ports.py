"""A second `bookstore up` while one runs: a clear refusal that starts nothing."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from harness import System

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def test_a_second_bookstore_up_is_refused_naming_ports_and_holders(system: System) -> None:
    before = system.pids()
    second = subprocess.run(
        [sys.executable, "-m", "bookstore", "up", "--no-color"],
        env=system.env,
        capture_output=True,
        text=True,
        timeout=120,  # a backstop that also ends it, should it start after all
    )
    assert second.returncode == 1
    assert "started" not in second.stdout  # it launched nothing
    queue_port = system.address("ORDER_QUEUE_ADDRESS").rsplit(":", 1)[1]
    queue_pid = before["order-queue"]
    assert re.search(
        rf"port {queue_port} \(order-queue, [^)]+\) is in use by pid {queue_pid} \(.*order-queue",
        second.stderr,
    ), second.stderr
    orchestrator_port = system.address("ORCHESTRATOR_ADDRESS").rsplit(":", 1)[1]
    assert f"port {orchestrator_port} (orchestrator," in second.stderr
    assert "nothing started" in second.stderr
    # The first system is untouched.
    system.wait_healthy()
    assert system.pids() == before
