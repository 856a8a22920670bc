"""What a customer and an operator do on the pages, as small helpers."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from playwright.sync_api import BrowserContext, Page, expect

LOCAL_HOSTS = {"127.0.0.1", "localhost"}
# Screenshots go to test-artifacts/ (ignored by git); to refresh the ones README
# shows: SCREENSHOTS_DIR=docs/screenshots scripts/test tests/browser
SCREENSHOTS = Path(
    os.environ.get("SCREENSHOTS_DIR")
    or Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
).resolve()


def future_expiry() -> str:
    return f"12/{(datetime.now(UTC).year + 2) % 100:02d}"


CUSTOMER = {
    "name": "Ada Lovelace",
    "contact": "ada@example.org",
    "cardNumber": "4508 7512 3456 7896",  # issued in Estonia, like the address
    "cvv": "123",
    "street": "Narva mnt 18",
    "city": "Tartu",
    "state": "Tartumaa",
    "zip": "51009",
    "country": "Estonia",
}


def search(page: Page, text: str) -> None:
    page.get_by_label("Search by title, author or genre").fill(text)
    page.get_by_label("Search by title, author or genre").press("Enter")


def add_book(page: Page, title: str) -> None:
    page.get_by_role("button", name=f"Add {title} to cart", exact=True).first.click()


def fill_customer(page: Page, **overrides: str) -> None:
    values = {**CUSTOMER, "expiry": future_expiry(), **overrides}
    for field, value in values.items():
        page.locator(f"#{field}").fill(value)
    page.get_by_label("I accept the terms and conditions").check()


def place_order(page: Page) -> None:
    page.get_by_role("button", name="Place order").click()


def expect_status(page: Page, status: str, timeout_ms: float = 15_000) -> None:
    expect(page.locator("#result-status")).to_have_text(status, timeout=timeout_ms)


def order_id_shown(page: Page) -> str:
    text = page.locator("#order-id").inner_text().strip()
    assert re.fullmatch(r"[0-9a-f-]{36}", text), text
    return text


@dataclass(frozen=True)
class DrawnEvent:
    event: str
    service: str
    clock: tuple[int, ...]
    x: float
    y: float


def drawn_events(page: Page) -> list[DrawnEvent]:
    """The events of the diagram, read from the data attributes of the SVG."""
    rows = page.locator("svg.spacetime g.event").evaluate_all(
        "els => els.map(e => ({...e.dataset}))"
    )
    return [
        DrawnEvent(
            event=r["event"],
            service=r["service"],
            clock=tuple(int(x) for x in r["clock"].split(",")),
            x=float(r["x"]),
            y=float(r["y"]),
        )
        for r in rows
    ]


def lifelines(page: Page) -> dict[str, float]:
    rows = page.locator("svg.spacetime line.lifeline").evaluate_all(
        "els => els.map(e => [e.dataset.service, Number(e.getAttribute('y1'))])"
    )
    return {str(service): float(y) for service, y in rows}


def assert_consistent_with_clocks(events: list[DrawnEvent]) -> None:
    """Each event sits on its service's line, right of everything that happened before it."""
    for a in events:
        for b in events:
            if a.clock != b.clock and all(x <= y for x, y in zip(a.clock, b.clock, strict=True)):
                assert a.x < b.x, f"{a.event}{a.clock} happened before {b.event}{b.clock}"


class RecordedPage:
    """A page with every request URL and every page error it saw."""

    def __init__(self, context: BrowserContext) -> None:
        self.context = context
        self.page: Page = context.new_page()
        self.page.set_default_timeout(10_000)
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.console_errors: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on(
            "console",
            lambda m: self.console_errors.append(m.text) if m.type == "error" else None,
        )

    def policy_violations(self) -> list[str]:
        """What the Content-Security-Policy stopped (an asset from elsewhere, inline code)."""
        return [m for m in self.console_errors if "Content Security Policy" in m]

    def foreign_requests(self) -> list[str]:
        """Requests that went anywhere but this machine."""
        return [
            u
            for u in self.requests
            if not u.startswith(("data:", "blob:")) and urlsplit(u).hostname not in LOCAL_HOSTS
        ]


def approved_order(base_url: str) -> str:
    """Place an order over HTTP that the rules approve; its id."""
    body = {
        "user": {"name": "Grace Hopper", "contact": "grace@example.org"},
        "creditCard": {
            "number": "4111111111111111",
            "expirationDate": future_expiry(),
            "cvv": "123",
        },
        "items": [
            {"name": "Distributed Systems", "quantity": 2},
            {"name": "Designing Data-Intensive Applications", "quantity": 1},
        ],
        "billingAddress": {
            "street": "Juhan Liivi 2",
            "city": "Tartu",
            "state": "Tartumaa",
            "zip": "50409",
            "country": "Estonia",
        },
        "termsAndConditionsAccepted": True,
        "shippingMethod": "Standard",
    }
    res = httpx.post(f"{base_url}/checkout", json=body, timeout=20)
    assert res.status_code == 200, res.text
    assert res.json()["status"] == "Order Approved", res.text
    return str(res.json()["orderId"])
