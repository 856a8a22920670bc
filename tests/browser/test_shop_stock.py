"""The shop's stock and the cluster view's books database, against the real system
with three real books-database replicas.

`bookstore up` starts the three replicas; the stock is set through the database's
admin SetStock (as the operator's identity), and an executed order takes its copies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
from harness import System, start_system
from pages import RecordedPage, approved_order, search
from playwright.sync_api import expect
from tls_support import transport

from bookstore.books_database.client import BooksDatabaseClient

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

T = TypeVar("T")
BOOK = "b001"
TITLE = "Designing Data-Intensive Applications"


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` to its end on a loop of its own (Playwright's owns this thread)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _addresses(system: System) -> dict[int, str]:
    pairs = (p.split("=", 1) for p in system.env["BOOKS_DATABASE_ADDRESSES"].split(","))
    return {int(k): v for k, v in pairs}


def _admin(system: System) -> BooksDatabaseClient:
    """The database as its operator (the launcher's identity may set stock)."""
    return BooksDatabaseClient(
        _addresses(system),
        deadline_s=20.0,
        channel_factory=transport(system.env, "launcher").channel,
    )


async def _set_stock(system: System, stock: Mapping[str, int]) -> None:
    db = _admin(system)
    try:
        await db.set_stock(stock)
    finally:
        await db.close()


async def _converged(system: System) -> None:
    """Until every replica has applied the same log."""
    db = _admin(system)
    try:
        while True:
            states = [await db.status(i) for i in _addresses(system)]
            if len({(s.applied_index, s.digest) for s in states}) == 1:
                return
            await asyncio.sleep(0.05)
    finally:
        await db.close()


@pytest.fixture(scope="module")
def stocked() -> Iterator[System]:
    with start_system() as running:
        running.wait_healthy()
        yield running


def test_the_shop_shows_the_stock_the_database_holds_and_an_executed_order_takes_it(
    recorded: RecordedPage, stocked: System
) -> None:
    page = recorded.page
    _run(_set_stock(stocked, {BOOK: 3}))
    page.goto(stocked.base_url + "/")
    search(page, TITLE)
    card = page.locator(f".book[data-book-id='{BOOK}']")
    expect(card.locator(".stock")).to_have_text("3 in stock")

    approved_order(stocked.base_url)  # one copy of BOOK, answered once executed
    page.reload()  # the page reads the stock again
    search(page, TITLE)
    expect(card.locator(".stock")).to_have_text("2 in stock")

    _run(_set_stock(stocked, {BOOK: 0}))
    page.reload()
    search(page, TITLE)
    expect(card.locator(".stock")).to_have_text("sold out")
    expect(card.get_by_role("button", name=f"Add {TITLE} to cart")).to_be_disabled()
    _run(_set_stock(stocked, {BOOK: 50}))  # for the tests after this one
    assert recorded.foreign_requests() == []


def test_the_cluster_view_shows_three_replicas_with_one_primary(
    recorded: RecordedPage, stocked: System
) -> None:
    page = recorded.page
    page.goto(stocked.base_url + "/cluster")
    expect(page.locator(".replica")).to_have_count(3, timeout=10_000)
    expect(page.locator(".replica[data-alive='true']")).to_have_count(3, timeout=10_000)
    expect(page.locator(".replica.leader")).to_have_count(1)
    expect(page.locator(".replica[data-role='primary']")).to_have_count(1)
    primary = page.locator(".replica.leader").get_attribute("data-replica-id")
    expect(page.locator("#database-line")).to_have_attribute("data-primary", primary or "")
    expect(page.locator("#database-line")).to_have_attribute("data-converged", "true")
    digests = set(page.locator(".replica").evaluate_all("els => els.map(e => e.dataset.digest)"))
    assert len(digests) == 1 and "" not in digests
    assert recorded.foreign_requests() == []


def test_the_cluster_view_draws_an_orders_replication(
    recorded: RecordedPage, stocked: System
) -> None:
    order_id = approved_order(stocked.base_url)  # the executor reserved and committed it
    _run(_converged(stocked))
    page = recorded.page
    page.goto(f"{stocked.base_url}/cluster?order={order_id}")
    svg = page.locator("svg.replication")
    expect(svg).to_have_attribute("data-order-id", order_id)
    # the reserve and the commit: appended by the primary, applied by all three
    expect(svg.locator("g.step[data-kind='appended']")).to_have_count(2)
    expect(svg.locator("g.step[data-kind='applied']")).to_have_count(6)
    expect(svg.locator("g.step[data-kind='stored']")).to_have_count(4)
    primary = svg.locator("g.step[data-kind='appended']").first.get_attribute("data-replica-id")
    stored_on = set(
        svg.locator("g.step[data-kind='stored']").evaluate_all(
            "els => els.map(e => e.dataset.replicaId)"
        )
    )
    assert primary is not None and len(stored_on) == 2 and primary not in stored_on
    assert svg.locator("line.message.append").count() == 4
    assert svg.locator("line.message.ack").count() >= 2  # a majority acknowledged each
    assert recorded.foreign_requests() == []
