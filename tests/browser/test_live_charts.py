"""The cluster view's live charts against the real system: after a burst of checkouts
the charts show non-zero checkouts, latency and executions."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from checkout_requests import course_page_request
from harness import System
from pages import SCREENSHOTS, RecordedPage
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

BURST = 40


def _checkout(base_url: str) -> str:
    answer = httpx.post(f"{base_url}/checkout", json=course_page_request(), timeout=30)
    return str(answer.json()["status"])


def test_charts_show_the_burst_of_checkouts(recorded: RecordedPage, system: System) -> None:
    page = recorded.page
    page.goto(system.base_url + "/cluster")
    expect(page.locator("#chart-checkouts svg")).to_be_visible(timeout=10_000)
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(_checkout, [system.base_url] * BURST))
    assert statuses == ["Order Approved"] * BURST
    for chart in ("chart-checkouts", "chart-latency", "chart-executions"):
        # Polled once a second: wait until the burst shows (a peak above zero). A function,
        # not an expression: Playwright evaluates an expression again at every poll with
        # eval, which the page's Content-Security-Policy (no 'unsafe-eval') refuses.
        page.wait_for_function(
            "(chart) => Number(document.getElementById(chart).dataset.peak) > 0",
            arg=chart,
            timeout=20_000,
        )
    checkouts = page.locator("#chart-checkouts path[data-series='approved']")
    expect(checkouts).to_have_count(1)
    expect(page.locator("#chart-executions path")).not_to_have_count(0)
    assert recorded.foreign_requests() == []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#charts-title").scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "charts.png"), full_page=False)
