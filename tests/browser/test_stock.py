"""The shop's stock and the cluster view's books database, against the real system
with three real books-database replicas.

Until `bookstore up` starts the replicas itself, this module starts them (on free
ports, their own data directory) and points the system at them. The stock is set
through the database's admin SetStock; once executing an order takes its copies, the
shop's number going down after an order belongs here too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from books_database_harness import Replicas
from harness import System, start_system
from pages import RecordedPage, approved_order, search
from playwright.sync_api import expect
from queue_harness import kill_all

from bookstore.books_database.client import BooksDatabaseClient

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

T = TypeVar("T")
BOOK = "b001"
TITLE = "Designing Data-Intensive Applications"
OTHER_BOOK = "b002"  # the first test sells BOOK out


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` to its end on a loop of its own (Playwright's owns this thread)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _start_replicas(root: Path) -> Replicas:
    replicas = Replicas(root, initial_stock=50)
    try:
        await replicas.start()
        await replicas.primary()
    finally:
        await replicas.db.close()  # made on this loop; the tests use clients of their own
    return replicas


async def _reserve_and_commit(addresses: Mapping[int, str], order_id: str) -> None:
    """What the executor does with an order's copies (epoch 1), then until every
    replica has applied it."""
    db = BooksDatabaseClient(addresses, deadline_s=20.0)
    try:
        assert (await db.reserve(order_id, {OTHER_BOOK: 1}, epoch=1)).ok
        await db.commit(order_id, epoch=1)
        while True:
            states = [await db.status(i) for i in addresses]
            if len({(s.applied_index, s.digest) for s in states}) == 1:
                return
            await asyncio.sleep(0.05)
    finally:
        await db.close()


async def _set_stock(addresses: Mapping[int, str], stock: Mapping[str, int]) -> None:
    db = BooksDatabaseClient(addresses, deadline_s=20.0)
    try:
        await db.set_stock(stock)
    finally:
        await db.close()


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    running = _run(_start_replicas(tmp_path_factory.mktemp("books-database")))
    try:
        yield running
    finally:
        kill_all(running.procs.values())


@pytest.fixture(scope="module")
def stocked(replicas: Replicas) -> Iterator[System]:
    addresses = ",".join(f"{i}={a}" for i, a in replicas.addresses.items())
    with start_system({"BOOKS_DATABASE_ADDRESSES": addresses}) as running:
        running.wait_healthy()
        yield running


def test_the_shop_shows_the_stock_the_database_holds(
    recorded: RecordedPage, replicas: Replicas, stocked: System
) -> None:
    page = recorded.page
    _run(_set_stock(replicas.addresses, {BOOK: 3}))
    page.goto(stocked.base_url + "/")
    search(page, TITLE)
    card = page.locator(f".book[data-book-id='{BOOK}']")
    expect(card.locator(".stock")).to_have_text("3 in stock")

    _run(_set_stock(replicas.addresses, {BOOK: 0}))
    page.reload()  # the page reads the stock again
    search(page, TITLE)
    expect(card.locator(".stock")).to_have_text("sold out")
    expect(card.get_by_role("button", name=f"Add {TITLE} to cart")).to_be_disabled()
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
    recorded: RecordedPage, replicas: Replicas, stocked: System
) -> None:
    order_id = approved_order(stocked.base_url)
    _run(_reserve_and_commit(replicas.addresses, order_id))
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
