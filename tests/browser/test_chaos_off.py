"""With chaos off (the default) the cluster view has no fault panel and the fault
endpoints do not exist."""

from __future__ import annotations

import httpx
import pytest
from harness import System
from pages import RecordedPage
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


def test_no_panel_and_no_fault_endpoints_without_chaos(
    recorded: RecordedPage, system: System
) -> None:
    page = recorded.page
    page.goto(f"{system.base_url}/cluster")
    expect(page.locator(".executor.leader")).to_have_count(1, timeout=15_000)
    expect(page.locator("#chaos-panel")).to_have_count(0)
    with httpx.Client(base_url=system.base_url) as api:
        assert api.get("/api/chaos").status_code == 404
        answer = api.post("/api/chaos/faults", json={"op": "kill", "name": "order-executor-4"})
        assert answer.status_code in (403, 404)
        assert api.post("/api/chaos/load", json={"rate": 1}).status_code in (403, 404)
        assert api.post("/api/chaos/scenarios/kill-leader").status_code in (403, 404)
    assert "chaos" not in system.log()
