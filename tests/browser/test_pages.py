"""The pages against a scripted API: every kind of answer the shop must render."""

from __future__ import annotations

import json

import pytest
from commitment_steps import COMMITTED
from pages import (
    RecordedPage,
    add_book,
    assert_consistent_with_clocks,
    drawn_events,
    expect_status,
    fill_customer,
    future_expiry,
    lifelines,
    place_order,
)
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser


def test_client_checks_stop_a_bad_card_before_it_is_sent(
    recorded: RecordedPage, fake_url: str
) -> None:
    page = recorded.page
    page.goto(fake_url + "/")
    add_book(page, "The Pragmatic Programmer")
    fill_customer(page, cardNumber="4111 1111 1111 1112", expiry="13/30", cvv="12")
    place_order(page)
    expect(page.locator("#cardNumber-error")).to_contain_text("not valid")
    expect(page.locator("#expiry-error")).to_contain_text("01 to 12")
    expect(page.locator("#cvv-error")).to_contain_text("3 digits")
    expect(page.locator("#cardNumber")).to_be_focused()
    assert not any(u.endswith("/checkout") for u in recorded.requests)


def test_an_empty_cart_is_not_sent(recorded: RecordedPage, fake_url: str) -> None:
    page = recorded.page
    page.goto(fake_url + "/")
    fill_customer(page)
    place_order(page)
    expect(page.locator("#cart-error")).to_have_text("Your cart is empty.")
    assert not any(u.endswith("/checkout") for u in recorded.requests)


def test_rejection_shows_its_reason(page: Page, fake_url: str) -> None:
    page.goto(fake_url + "/")
    add_book(page, "The Pragmatic Programmer")
    fill_customer(page, name="Reject Me")
    place_order(page)
    expect_status(page, "Order Rejected")
    expect(page.locator("#reason")).to_have_text("The card number is not valid.")


def test_server_error_shows_its_message(page: Page, fake_url: str) -> None:
    page.goto(fake_url + "/")
    add_book(page, "The Pragmatic Programmer")
    fill_customer(page, name="Error")
    place_order(page)
    expect(page.locator("#error-message")).to_have_text("A checkout service is down.")


def test_cancelled_order_diagram_ends_with_the_cancel(page: Page, fake_url: str) -> None:
    page.goto(fake_url + "/")
    add_book(page, "The Pragmatic Programmer")
    fill_customer(page, name="Reject Me")
    place_order(page)
    expect_status(page, "Order Rejected")
    page.locator("#diagram-link").click()
    expect(page.locator("svg.spacetime g.event")).to_have_count(4)
    events = drawn_events(page)
    assert_consistent_with_clocks(events)
    assert {e.event for e in events} == {"a", "b", "c", "d"}
    assert page.locator("svg.spacetime g.event.failed").get_attribute("data-event") == "c"
    end = page.locator("svg.spacetime g.end")
    assert end.get_attribute("data-cancelled") == "true"
    assert end.get_attribute("data-final") == "3,1,0"
    expect(end.locator(".cancel-mark")).to_have_count(3)
    lines = lifelines(page)
    assert all(lines[e.service] == e.y for e in events)


def test_an_orders_commitment_is_drawn_message_by_message(page: Page, fake_url: str) -> None:
    page.goto(fake_url + "/")
    add_book(page, "The Pragmatic Programmer")
    fill_customer(page)
    place_order(page)
    expect_status(page, "Order Approved")
    page.locator("#diagram-link").click()
    svg = page.locator("svg.commitment")
    expect(svg.locator("g.message-step")).to_have_count(len(COMMITTED))
    drawn = svg.locator("g.message-step").evaluate_all(
        "els => els.map(e => [e.dataset.kind, e.dataset.from, e.dataset.to, e.dataset.detail])"
    )
    assert [tuple(d) for d in drawn] == list(COMMITTED)
    lanes = svg.locator("line.lifeline").evaluate_all("els => els.map(e => e.dataset.lane)")
    assert lanes == ["coordinator", "decision-log", "books-database", "payment"]
    expect(svg.locator("text.lane-label").first).to_have_text("coordinator (executor 3)")
    expect(page.locator("#replication-empty")).to_be_visible()


def test_shop_fits_a_phone_screen(browser_page_375: Page, fake_url: str) -> None:
    page = browser_page_375
    page.goto(fake_url + "/")
    add_book(page, "The Pragmatic Programmer")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375
    for field in ("name", "cardNumber", "expiry", "cvv", "street", "country"):
        box = page.locator(f"#{field}").bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375


def test_shop_works_from_the_keyboard(page: Page, fake_url: str) -> None:
    page.goto(fake_url + "/")
    expect(page.locator(".book")).to_have_count(4)
    page.get_by_label("Search by title, author or genre").focus()
    page.keyboard.type("kleppmann")
    expect(page.locator(".book")).to_have_count(1)
    page.keyboard.press("Tab")  # the search button
    page.keyboard.press("Tab")  # the book's Add button
    page.keyboard.press("Enter")
    expect(page.locator(".cart-line")).to_have_count(1)


def test_approved_order_goes_from_queued_to_executed(page: Page, fake_url: str) -> None:
    page.goto(fake_url + "/")
    add_book(page, "The Pragmatic Programmer")
    fill_customer(page)
    place_order(page)
    expect_status(page, "Order Approved")
    execution = page.locator("#execution")
    expect(execution).to_have_attribute("data-state", "executed")
    expect(execution).to_have_text("✓Executed by replica 3 (epoch 2)")
    expect(page.locator("#suggestions li")).to_have_text(
        ["Distributed Systems — Maarten van SteenAdd to cart"]
    )
    trace = page.get_by_role("link", name="ShiViz trace")
    assert (trace.get_attribute("href") or "").endswith("/trace")


def test_cluster_view_fits_a_phone_screen(browser_page_375: Page, fake_url: str) -> None:
    page = browser_page_375
    page.goto(fake_url + "/cluster")
    expect(page.locator(".executor")).to_have_count(4)
    expect(page.locator(".executor.leader")).to_have_attribute("data-replica-id", "3")
    expect(page.locator(".executor[data-alive='false']")).to_have_count(1)
    expect(page.locator("#leaders li")).to_have_count(1)
    expect(page.locator("#leaders li")).to_contain_text("epoch 2 replica 3")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375


def test_shop_sends_the_contract_fields(page: Page, fake_url: str) -> None:
    page.goto(fake_url + "/")
    add_book(page, "The Pragmatic Programmer")
    add_book(page, "The Pragmatic Programmer")
    fill_customer(page)
    page.get_by_label("Gift wrapping").check()
    page.get_by_label("Gift message (optional)").fill("Enjoy!")
    page.get_by_label("Shipping").select_option("Express")
    with page.expect_request(lambda r: r.url.endswith("/checkout")) as sent:
        place_order(page)
    body = json.loads(sent.value.post_data or "{}")
    assert body["items"] == [{"name": "The Pragmatic Programmer", "bookId": "b1", "quantity": 2}]
    assert body["user"] == {"name": "Ada Lovelace", "contact": "ada@example.org"}
    assert body["creditCard"]["number"] == "4508751234567896"
    assert body["creditCard"]["expirationDate"] == future_expiry()
    assert body["billingAddress"]["country"] == "Estonia"
    assert body["termsAndConditionsAccepted"] is True
    assert body["shippingMethod"] == "Express"
    assert body["giftWrapping"] is True and body["giftMessage"] == "Enjoy!"
    assert body["notificationPreferences"] == ["email"]
    assert set(body["device"]) == {"type", "model", "os"}
    assert set(body["browser"]) == {"name", "version"}
    expect_status(page, "Order Approved")
