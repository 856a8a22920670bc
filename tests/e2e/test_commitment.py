"""End to end: every order executed as one two-phase commit (the course's scenarios).

One system for the module, every book starting with STOCK copies; each test
ends with the audit of the whole run so far (commitment_audit.py).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator

import pytest
from checkout_requests import card_secrets_in
from commitment_audit import Shop, audit, batched, batched_at, data_files, order
from harness import System, start_system
from tls_support import transport

from bookstore.books_database.client import BooksDatabaseClient
from bookstore.catalogue import load_catalogue

pytestmark = pytest.mark.e2e

STOCK = 1000
LAST_COPIES_BOOK = "b030"
LAST_COPIES = 3
CATALOGUE = load_catalogue()
RESTOCKED: dict[str, int] = {}  # books whose stock a test set: their new starting stock


def initial_stock(book_id: str) -> int:
    return RESTOCKED.get(book_id, STOCK)


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    with start_system({"BOOKS_INITIAL_STOCK": str(STOCK)}) as running:
        yield running


@pytest.fixture(scope="module")
def shop(system: System) -> Shop:
    return Shop(system)


def price(book_id: str) -> int:
    book = CATALOGUE.by_id(book_id)
    assert book is not None
    return book.price_cents


def test_one_order_is_executed_and_paid(shop: Shop) -> None:
    answer = shop.post(order({"b001": 2, "b002": 1}))
    assert answer["status"] == "Order Approved", answer
    assert answer["execution"]["state"] == "executed", answer
    amount = 2 * price("b001") + price("b002")
    assert answer["payment"] == {
        "state": "captured",
        "amount": f"{amount // 100}.{amount % 100:02d}",
        "amountCents": amount,
        "currency": "EUR",
    }
    assert shop.order(answer["orderId"])["payment"] == answer["payment"]
    report = audit(shop, initial_stock)
    assert report.executed[answer["orderId"]] == amount


def test_concurrent_orders_for_different_books_are_all_executed(shop: Shop) -> None:
    books = [f"b{n:03d}" for n in range(3, 23)]
    answers = shop.post_all([order({b: 1 + n % 3}) for n, b in enumerate(books)])
    assert [a["status"] for a in answers] == ["Order Approved"] * len(books), answers
    report = audit(shop, initial_stock)
    assert {a["orderId"] for a in answers} <= set(report.executed)


def test_concurrent_orders_share_the_books_database_calls(shop: Shop) -> None:
    """The leader runs many orders' transactions at once: their reserves and commits go
    to the books database together, in fewer Write calls than operations."""
    calls_before, operations_before = batched(shop.system, "books-database")
    books = [f"b{n:03d}" for n in range(3, 27)]
    for _ in range(3):  # how the orders overlap is the system's business: a few rounds
        answers = shop.post_all([order({b: 1}) for b in books], workers=len(books))
        assert [a["status"] for a in answers] == ["Order Approved"] * len(books), answers
        audit(shop, initial_stock)  # every order finished: its commit was sent
        calls, operations = batched(shop.system, "books-database")
        calls, operations = calls - calls_before, operations - operations_before
        if operations > calls:
            break
    print(f"{operations:.0f} reserves and commits in {calls:.0f} Write calls")
    assert operations >= 2 * len(books)  # every reserve and commit went in a batch
    assert operations > calls  # and calls carried several orders' operations


def test_concurrent_orders_share_payment_calls(shop: Shop) -> None:
    """Their authorizations and captures go to payment together, in fewer Apply calls."""
    calls_before, operations_before = batched(shop.system, "payment")
    executed: list[str] = []
    for _ in range(3):  # rounds of concurrent orders, until two of them shared a call
        answers = shop.post_all([order({"b026": 1}) for _ in range(24)], workers=24)
        assert [a["status"] for a in answers] == ["Order Approved"] * 24, answers
        executed += [a["orderId"] for a in answers]
        # Answered at their decisions: the audit waits for their captures too.
        report = audit(shop, initial_stock)
        calls, operations = batched(shop.system, "payment")
        calls, operations = calls - calls_before, operations - operations_before
        if operations > calls:
            break
    assert operations >= 2 * len(executed)  # an authorization and a capture each
    assert operations > calls
    assert set(executed) <= set(report.executed)


def test_concurrent_orders_share_the_queues_batch_calls(shop: Shop) -> None:
    """Their enqueues (orchestrator), and their decisions and completions (the leader),
    reach the queue together, in fewer EnqueueBatch and LeaderBatch calls."""
    orchestrator = [f"{shop.system.base_url}/metrics"]
    enqueues_before = batched_at(orchestrator, "order-queue")
    leader_before = batched(shop.system, "order-queue")
    books = [f"b{n:03d}" for n in range(40, 64)]
    for _ in range(5):  # how the orders overlap is the system's business: a few rounds
        answers = shop.post_all([order({b: 1}) for b in books], workers=len(books))
        assert [a["status"] for a in answers] == ["Order Approved"] * len(books), answers
        audit(shop, initial_stock)  # every order finished: its completion was sent
        enqueues = _minus(batched_at(orchestrator, "order-queue"), enqueues_before)
        leader = _minus(batched(shop.system, "order-queue"), leader_before)
        if enqueues[1] > enqueues[0] and leader[1] > leader[0]:
            break
    print(f"(calls, operations): enqueues {enqueues}, decisions and completions {leader}")
    assert enqueues[1] >= len(books) and leader[1] >= 2 * len(books)  # all went in batches
    assert enqueues[1] > enqueues[0] and leader[1] > leader[0]  # and calls carried several


def _minus(now: tuple[float, float], before: tuple[float, float]) -> tuple[float, float]:
    return now[0] - before[0], now[1] - before[1]


def test_fraudulent_and_clean_orders_mixed(shop: Shop) -> None:
    seed = random.randrange(1 << 30)
    print(f"seed={seed}")
    fraud = {"user": {"name": "Eve Doe", "contact": "eve@mailinator.com"}}
    kinds = [n % 2 == 0 for n in range(16)]
    random.Random(seed).shuffle(kinds)
    bodies = [order({"b023": 1}, **(fraud if bad else {})) for bad in kinds]
    answers = shop.post_all(bodies)
    for bad, answer in zip(kinds, answers, strict=True):
        if bad:
            assert answer["status"] == "Order Rejected", answer
            assert "throw-away" in answer["reason"], answer
            assert "execution" not in answer  # never queued
        else:
            assert answer["status"] == "Order Approved", answer
    report = audit(shop, initial_stock)
    assert sum(1 for a in answers if a["orderId"] in report.executed) == kinds.count(False)


def test_orders_for_the_last_copies_exactly_as_many_succeed_as_there_are_copies(
    shop: Shop, system: System
) -> None:
    addresses = {
        int(k): v
        for k, v in (p.split("=", 1) for p in system.env["BOOKS_DATABASE_ADDRESSES"].split(","))
    }

    async def set_stock() -> None:
        client = BooksDatabaseClient(
            addresses, deadline_s=30.0, channel_factory=transport(system.env, "launcher").channel
        )
        try:
            await client.set_stock({LAST_COPIES_BOOK: LAST_COPIES})
        finally:
            await client.close()

    asyncio.run(set_stock())
    RESTOCKED[LAST_COPIES_BOOK] = LAST_COPIES
    title = CATALOGUE.by_id(LAST_COPIES_BOOK).title  # type: ignore[union-attr]
    answers = shop.post_all([order({LAST_COPIES_BOOK: 1}) for _ in range(10)], workers=10)
    approved = [a for a in answers if a["status"] == "Order Approved"]
    rejected = [a for a in answers if a["status"] == "Order Rejected"]
    assert len(approved) == LAST_COPIES, answers
    for answer in rejected:
        assert answer["reason"] == f"out of stock: {title}", answer
        assert answer["suggestedBooks"] == []
    report = audit(shop, initial_stock)
    assert all(stock[LAST_COPIES_BOOK] == 0 for stock in report.stock.values())


TEST_CARDS = [
    ("4000000000009995", "payment declined: insufficient funds"),
    ("4000000000000119", "payment declined: the card processor did not answer in time"),
]


@pytest.mark.parametrize(("card", "reason"), TEST_CARDS, ids=["insufficient-funds", "timeout"])
def test_each_test_card_is_declined_at_execution_and_nothing_is_taken(
    shop: Shop, card: str, reason: str
) -> None:
    answer = shop.post(order({"b024": 1}, card=card))
    assert answer["status"] == "Order Rejected", answer
    assert answer["reason"] == reason
    assert answer["suggestedBooks"] == []
    assert answer["execution"]["state"] == "rejected"
    assert shop.order(answer["orderId"])["reason"] == reason
    report = audit(shop, initial_stock)
    assert report.rejected[answer["orderId"]] == reason


def test_card_numbers_and_cvvs_are_in_no_log_file_or_answer(shop: Shop, system: System) -> None:
    """Every test card, approved or not, then every file of the run and every answer."""
    cards = ["4111111111111111", "4242424242424242", "4000000000000002", *dict(TEST_CARDS)]
    for card in cards:
        shop.post(order({"b025": 1}, card=card))
    audit(shop, initial_stock)
    texts = {str(p): p.read_bytes().decode("latin-1") for p in data_files(system.data_dir)}
    texts |= {f"answer {o}": json.dumps(a) for o, a in shop.answers.items()}
    texts |= {f"order {o}": json.dumps(shop.order(o)) for o in shop.answers}
    assert any(p.endswith("queue.db") for p in texts)  # the databases were read
    assert any(p.endswith("ledger.db") for p in texts)
    # Every card shares the default CVV: one search for it per text, then each number.
    found = {
        where: card_secrets_in(text) + [card for card in cards if card in text]
        for where, text in texts.items()
    }
    assert not {where: f for where, f in found.items() if f}
