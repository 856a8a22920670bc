"""The cluster view follows the executors through a leader's crash."""

from __future__ import annotations

import os
import signal
import time

import pytest
from harness import System
from pages import SCREENSHOTS, RecordedPage, approved_order
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


def test_cluster_view_shows_the_new_leader_after_the_leader_is_killed(
    recorded: RecordedPage, system: System
) -> None:
    order_id = approved_order(system.base_url)
    page = recorded.page
    page.goto(f"{system.base_url}/cluster?order={order_id}")
    leader = page.locator(".executor.leader")
    expect(leader).to_have_count(1, timeout=15_000)
    old_pid = int(leader.get_attribute("data-pid") or 0)
    old_epoch = int(page.locator("#leader-line").get_attribute("data-epoch") or 0)
    executors = {pid for name, pid in system.pids().items() if name.startswith("order-executor")}
    assert old_pid in executors, f"pid {old_pid} is not one of our executors {executors}"

    os.kill(old_pid, signal.SIGKILL)
    killed = time.monotonic()
    page.wait_for_function(
        """([pid, epoch]) => {
          const leader = document.querySelector(".executor.leader");
          const line = document.getElementById("leader-line");
          return leader !== null && Number(leader.dataset.pid) !== pid
            && Number(line.dataset.epoch) > epoch;
        }""",
        arg=[old_pid, old_epoch],
        timeout=10_000,
    )
    print(f"new leader shown {time.monotonic() - killed:.2f} s after SIGKILL")
    expect(page.locator(".executor.leader")).to_have_count(1)
    expect(page.locator(".elections li").first).not_to_have_class("empty")
    expect(page.locator("svg.spacetime g.event")).to_have_count(6)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "cluster.png"), full_page=True)
