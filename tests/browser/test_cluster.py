"""The cluster view against the real system."""

from __future__ import annotations

import httpx
import pytest
from harness import System
from pages import (
    RecordedPage,
    approved_order,
    assert_consistent_with_clocks,
    drawn_events,
    lifelines,
)
from playwright.sync_api import expect

from bookstore import vclock

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

CHECKOUT_SERVICES = ("transaction-verification", "fraud-detection", "suggestions")
SERVICE_OF = {
    "a": "transaction-verification",
    "b": "transaction-verification",
    "c": "transaction-verification",
    "d": "fraud-detection",
    "e": "fraud-detection",
    "f": "suggestions",
}


def test_cluster_view_shows_services_and_executors_with_one_leader(
    recorded: RecordedPage, system: System
) -> None:
    page = recorded.page
    page.goto(system.base_url + "/cluster")
    for service in CHECKOUT_SERVICES:
        row = page.locator(f"tr.service-row[data-service='{service}']")
        expect(row).to_have_attribute("data-healthy", "true", timeout=10_000)
    expect(page.locator(".executor")).to_have_count(4, timeout=10_000)
    expect(page.locator(".executor.leader")).to_have_count(1, timeout=10_000)
    leader = page.locator(".executor.leader")
    assert leader.get_attribute("data-alive") == "true"
    ids = sorted(page.locator(".executor").evaluate_all("els => els.map(e => e.dataset.replicaId)"))
    assert ids == ["1", "2", "3", "4"]
    assert page.locator("#leader-line").get_attribute("data-leader") == leader.get_attribute(
        "data-replica-id"
    )
    assert recorded.foreign_requests() == []


def test_diagram_shows_six_events_on_three_lines_ordered_by_their_clocks(
    recorded: RecordedPage, system: System
) -> None:
    order_id = approved_order(system.base_url)
    page = recorded.page
    page.goto(f"{system.base_url}/cluster?order={order_id}")
    svg = page.locator("svg.spacetime")
    expect(svg).to_have_attribute("data-order-id", order_id)
    expect(svg.locator("g.event")).to_have_count(6)
    events = drawn_events(page)
    assert sorted(e.event for e in events) == ["a", "b", "c", "d", "e", "f"]
    lines = lifelines(page)
    assert set(lines) == set(CHECKOUT_SERVICES)
    assert len(set(lines.values())) == 3
    for e in events:
        assert e.service == SERVICE_OF[e.event]
        assert e.y == lines[e.service], f"{e.event} is not on its service's line"
    assert_consistent_with_clocks(events)
    by = {e.event: e for e in events}
    # the partial order of the choreography, as drawn
    for before, after in ("ac", "bd", "ce", "de", "ef"):
        assert by[before].x < by[after].x
    # after each event its clock goes to both other services
    assert svg.locator("line.message").count() == 12
    # an arrow ends at an event only if that event's clock shows the sender's event
    ends = svg.locator("line.message").evaluate_all(
        "ls => ls.map(l => [l.dataset.from, l.dataset.toEvent])"
    )
    received = [(src, dst) for src, dst in ends if dst]
    assert received, ends
    for src, dst in received:
        assert vclock.leq(by[src].clock, by[dst].clock), (src, dst)
    end = svg.locator("g.end")
    assert end.get_attribute("data-cancelled") == "false"
    assert end.get_attribute("data-final") == ",".join(str(x) for x in by["f"].clock)

    trace = page.locator("#trace-link")
    res = httpx.get(system.base_url + str(trace.get_attribute("href")), timeout=5)
    assert res.status_code == 200
    assert len(res.text.splitlines()) == 2 + 6 + 1

    row = page.locator(f"tr.order-row[data-order-id='{order_id}']")
    expect(row).to_have_attribute("aria-selected", "true")
    assert recorded.foreign_requests() == []


def test_choosing_an_order_in_the_list_draws_it(recorded: RecordedPage, system: System) -> None:
    first = approved_order(system.base_url)
    second = approved_order(system.base_url)
    page = recorded.page
    page.goto(f"{system.base_url}/cluster?order={first}")
    expect(page.locator("svg.spacetime")).to_have_attribute("data-order-id", first)
    page.locator(f"tr.order-row[data-order-id='{second}']").click()
    expect(page.locator("svg.spacetime")).to_have_attribute("data-order-id", second)
    assert f"order={second}" in page.url
