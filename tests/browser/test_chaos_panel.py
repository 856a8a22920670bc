"""The fault panel against the real system under `bookstore up` with chaos on
(`chaos_system`, shared with tests/e2e/test_chaos.py: tests/conftest.py)."""

from __future__ import annotations

import time

import pytest
from harness import System
from pages import SCREENSHOTS, RecordedPage
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


def open_panel(page: Page, system: System) -> int:
    """The cluster view with its panel; the current leader's replica id."""
    page.goto(f"{system.base_url}/cluster")
    expect(page.locator("#chaos-panel")).to_be_visible()
    leader = page.locator(".executor.leader")
    expect(leader).to_have_count(1, timeout=15_000)
    return int(leader.get_attribute("data-replica-id") or 0)


def test_kill_on_the_leader_shows_a_new_leader(
    recorded: RecordedPage, chaos_system: System
) -> None:
    page = recorded.page
    old = open_panel(page, chaos_system)
    old_pid = int(page.locator(".executor.leader").get_attribute("data-pid") or 0)
    assert old_pid == chaos_system.pid(f"order-executor-{old}")
    epoch = int(page.locator("#leader-line").get_attribute("data-epoch") or 0)
    button = page.locator(f'tr[data-process="order-executor-{old}"] button[data-action="kill"]')
    button.click()
    clicked = time.monotonic()
    # Who leads next is a race that Bully allows either way: the survivors elect one of
    # their own (failure timeout 0.5 s + election timeout 0.25 s) while the launcher starts
    # the killed replica again (0.5 s back-off + its start-up), and a restarted highest id
    # wins at once. So the new leader is another replica or the killed one in a new
    # process: a newer epoch, held by a process other than the killed one.
    new = page.wait_for_function(
        """([pid, epoch]) => {
          const leader = document.querySelector(".executor.leader");
          const line = document.getElementById("leader-line");
          const shown = leader !== null && Number(leader.dataset.pid) !== pid
            && Number(line.dataset.epoch) > epoch;
          return shown && `replica ${leader.dataset.replicaId} (pid ${leader.dataset.pid})`;
        }""",
        arg=[old_pid, epoch],
        timeout=15_000,
    ).json_value()
    print(f"new leader {new} shown {time.monotonic() - clicked:.2f} s after the click on kill")
    expect(page.locator("#chaos-changes")).to_contain_text(f"kill order-executor-{old}")
    chaos_system.wait_restarted(f"order-executor-{old}", old_pid)
    # Back to where the next test starts: the restarted replica leads again (Bully).
    expect(page.locator(".executor.leader")).to_have_attribute(
        "data-replica-id", str(old), timeout=30_000
    )


def test_isolate_takes_a_replica_out_of_the_election_and_heal_brings_it_back(
    recorded: RecordedPage, chaos_system: System
) -> None:
    page = recorded.page
    old = open_panel(page, chaos_system)
    row = page.locator(f'tr[data-process="order-executor-{old}"]')
    card = page.locator(f'.executor[data-replica-id="{old}"]')
    row.locator('button[data-action="isolate"]').click()
    expect(card).to_have_attribute("data-alive", "false", timeout=10_000)
    expect(page.locator(".executor.leader")).not_to_have_attribute(
        "data-replica-id", str(old), timeout=10_000
    )
    expect(page.locator("#chaos-rules")).to_contain_text(f"drop order-executor-{old} → *")
    row.locator('button[data-action="heal"]').click()
    expect(card).to_have_attribute("data-alive", "true", timeout=10_000)
    expect(page.locator("#chaos-rules")).to_contain_text("No message faults.")


def test_a_slow_link_is_set_shown_and_healed(recorded: RecordedPage, chaos_system: System) -> None:
    page = recorded.page
    open_panel(page, chaos_system)
    page.select_option("#rule-src", "orchestrator")
    page.select_option("#rule-dst", "order-queue")
    page.select_option("#rule-action", "delay")
    page.fill("#rule-ms", "150")
    page.click("#rule-button")
    expect(page.locator("#chaos-rules")).to_contain_text("delay 150 ms orchestrator → order-queue")
    page.click("#heal-all")
    expect(page.locator("#chaos-rules")).to_contain_text("No message faults.")
    expect(page.locator("#chaos-changes")).to_contain_text("heal all")


def test_a_scenario_from_the_panel_ends_with_its_audit(
    recorded: RecordedPage, chaos_system: System
) -> None:
    page = recorded.page
    open_panel(page, chaos_system)
    page.locator('button[data-scenario="split-executors"]').click()
    expect(page.locator("#chaos-run")).to_contain_text("partition 1 2 | 3 4", timeout=15_000)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "chaos.png"), full_page=True)
    expect(page.locator("#chaos-audit")).to_be_visible(timeout=90_000)
    expect(page.locator('#chaos-audit dd[data-audit="lost"]')).to_have_text("0")
    expect(page.locator('#chaos-audit dd[data-audit="doubled"]')).to_have_text("0")
