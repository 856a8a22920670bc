"""A customer in the shop, against the real system."""

from __future__ import annotations

import re

import pytest
from harness import System
from pages import (
    SCREENSHOTS,
    RecordedPage,
    add_book,
    expect_status,
    fill_customer,
    order_id_shown,
    place_order,
    search,
)
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

# A card that passes every client-side check but is on fraud detection's deny list.
REJECTED_CUSTOMER = {"cardNumber": "4000 0000 0000 0002"}
REJECTED_REASON = "This card was declined. Please use another card."


def test_customer_searches_buys_two_books_and_sees_them_executed(
    recorded: RecordedPage, system: System
) -> None:
    page = recorded.page
    page.goto(system.base_url + "/")
    expect(page.locator(".book").first).to_be_visible()
    assert page.locator(".book").count() > 10

    search(page, "kleppmann")
    expect(page.locator(".book", has_text="Designing Data-Intensive Applications")).to_be_visible()
    add_book(page, "Designing Data-Intensive Applications")
    search(page, "distributed")
    add_book(page, "Distributed Systems")
    page.get_by_label("Quantity of Distributed Systems", exact=True).fill("2")
    page.get_by_label("Quantity of Distributed Systems", exact=True).press("Tab")
    expect(page.locator(".cart-line")).to_have_count(2)
    expect(page.locator("#cart-count")).to_have_text("3 items")

    fill_customer(page)
    place_order(page)
    expect_status(page, "Order Approved")
    order_id_shown(page)
    suggestions = page.locator("#suggestions li")
    expect(suggestions.first).to_be_visible()
    for title in suggestions.locator("strong").all_inner_texts():
        assert title not in ("Designing Data-Intensive Applications", "Distributed Systems")
    execution = page.locator("#execution")
    expect(execution).to_have_attribute("data-state", "executed", timeout=20_000)
    expect(execution).to_contain_text(re.compile(r"Executed by replica [1-4]"))

    # a suggestion goes into the (now empty) cart with one click
    suggestions.first.get_by_role("button", name=re.compile("^Add .* to cart$")).click()
    expect(page.locator(".cart-line")).to_have_count(1)

    search(page, "")
    expect(page.locator(".book")).not_to_have_count(4)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#search").blur()
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(SCREENSHOTS / "shop.png"))
    assert recorded.foreign_requests() == []


def test_rejected_order_shows_its_reason(recorded: RecordedPage, system: System) -> None:
    page = recorded.page
    page.goto(system.base_url + "/")
    search(page, "kleppmann")
    add_book(page, "Designing Data-Intensive Applications")
    fill_customer(page, **REJECTED_CUSTOMER)
    place_order(page)
    expect_status(page, "Order Rejected")
    expect(page.locator("#reason")).to_have_text(REJECTED_REASON)
    assert recorded.foreign_requests() == []
