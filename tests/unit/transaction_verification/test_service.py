"""Events a and c with their backends faked: the stock read and the card's token."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from ports import free_ports

from bookstore import grpcutil
from bookstore.ai.budget import AiBudget
from bookstore.books_database.client import BookStock
from bookstore.catalogue import load_catalogue
from bookstore.pb import checkout_pb2, common_pb2, payment_pb2, payment_pb2_grpc
from bookstore.settings import Settings
from bookstore.transaction_verification.service import PAYMENT_DOWN, Backends, handlers

CATALOGUE = load_catalogue()
CARD = checkout_pb2.Card(number="4242424242424242", expiration="12/39", cvv="123")


@dataclass
class FakeBooks:
    available: dict[str, int] = field(default_factory=dict)
    down: bool = False
    asked: list[list[str]] = field(default_factory=list)

    async def read_advisory(self, book_ids: list[str]) -> dict[str, BookStock]:
        self.asked.append(book_ids)
        if self.down:
            raise grpcutil.ServiceUnavailable("books-database", "no primary")
        return {b: BookStock(100, self.available.get(b, 100)) for b in book_ids}

    async def close(self) -> None:
        pass


@dataclass
class FakePayment:
    """Payment's TokenizeBatch: the call fails as a whole with `error`, or refuses each
    card with INVALID_ARGUMENT `refusal`, or tokenizes it."""

    error: grpc.StatusCode | None = None
    refusal: str = ""
    cards: list[payment_pb2.TokenizeRequest] = field(default_factory=list)
    batches: list[int] = field(default_factory=list)  # cards per call

    async def TokenizeBatch(self, request: payment_pb2.TokenizeBatchRequest, **_: Any) -> Any:
        self.cards += request.cards
        self.batches.append(len(request.cards))
        if self.error is not None:
            metadata = grpc.aio.Metadata()
            raise grpc.aio.AioRpcError(self.error, metadata, metadata, "")
        if self.refusal:
            code = grpc.StatusCode.INVALID_ARGUMENT.value[0]
            error = payment_pb2.OperationError(code=code, message=self.refusal)
            outcome = payment_pb2.TokenizeOutcome(error=error)
        else:
            reply = payment_pb2.TokenizeReply(token="tok_fake", brand="visa", last4="4242")
            outcome = payment_pb2.TokenizeOutcome(token=reply)
        return payment_pb2.TokenizeBatchReply(outcomes=[outcome] * len(request.cards))


@pytest.fixture
async def backends() -> AsyncIterator[Backends]:
    b = Backends(Settings())
    real_books = b.books
    b.books = FakeBooks()  # type: ignore[assignment]
    b.payment = FakePayment()  # type: ignore[assignment]
    yield b
    await real_books.close()
    await b.close()


def order_of(*items: tuple[str, int]) -> checkout_pb2.OrderData:
    return checkout_pb2.OrderData(
        order_id=common_pb2.OrderId(value="o1"),
        items=[common_pb2.OrderItem(book_id=b, quantity=n) for b, n in items],
        card=CARD,
    )


async def test_a_book_without_the_copies_ordered_is_out_of_stock(backends: Backends) -> None:
    backends.books.available = {"b002": 1}  # type: ignore[attr-defined]
    items = handlers(CATALOGUE, backends)["a"]
    result = await items(order_of(("b001", 1), ("b002", 2)), AiBudget(1.0))
    title = CATALOGUE.by_id("b002").title  # type: ignore[union-attr]
    assert (result.ok, result.reason) == (False, f"out of stock: {title}")
    assert backends.books.asked == [["b001", "b002"]]  # type: ignore[attr-defined]


async def test_the_database_unreachable_lets_the_order_go_on(backends: Backends) -> None:
    backends.books.down = True  # type: ignore[attr-defined]
    result = await handlers(CATALOGUE, backends)["a"](order_of(("b001", 1)), AiBudget(1.0))
    assert result.ok and result.answered_by == "fallback: books database unavailable"


async def test_the_card_is_exchanged_for_a_token(backends: Backends) -> None:
    result = await handlers(CATALOGUE, backends)["c"](order_of(("b001", 1)), AiBudget(1.0))
    assert (result.ok, result.payment_token) == (True, "tok_fake")
    assert backends.payment.cards == [  # type: ignore[attr-defined]
        payment_pb2.TokenizeRequest(number=CARD.number, expiration="12/39", cvv="123")
    ]


async def test_payment_unreachable_rejects_and_a_refused_card_says_why(
    backends: Backends,
) -> None:
    card = handlers(CATALOGUE, backends)["c"]
    backends.payment.error = grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    result = await card(order_of(("b001", 1)), AiBudget(1.0))
    assert (result.ok, result.reason, result.payment_token) == (False, PAYMENT_DOWN, "")
    backends.payment.error = None  # type: ignore[attr-defined]
    backends.payment.refusal = "BAD_CARD: the card has expired"  # type: ignore[attr-defined]
    result = await card(order_of(("b001", 1)), AiBudget(1.0))
    assert (result.ok, result.reason) == (False, "The card was refused: the card has expired")


async def test_concurrent_card_events_share_tokenize_calls(backends: Backends) -> None:
    card = handlers(CATALOGUE, backends)["c"]
    results = await asyncio.gather(*(card(order_of(("b001", 1)), AiBudget(1.0)) for _ in range(6)))
    assert [r.payment_token for r in results] == ["tok_fake"] * 6
    batches = backends.payment.batches  # type: ignore[attr-defined]
    assert sum(batches) == 6 and len(batches) < 6


async def test_event_a_starts_the_cards_exchange_and_event_c_takes_it(backends: Backends) -> None:
    events = handlers(CATALOGUE, backends)
    order = order_of(("b001", 1))
    assert (await events["a"](order, AiBudget(1.0))).ok
    result = await events["c"](order, AiBudget(1.0))
    assert (result.ok, result.payment_token) == (True, "tok_fake")
    assert len(backends.payment.cards) == 1  # type: ignore[attr-defined]  # a's, taken by c


async def test_no_early_exchange_for_a_card_or_items_the_rules_refuse(backends: Backends) -> None:
    events = handlers(CATALOGUE, backends)
    expired = order_of(("b001", 1))
    expired.card.expiration = "01/20"
    assert (await events["a"](expired, AiBudget(1.0))).ok
    assert not (await events["a"](order_of(("b001", 0)), AiBudget(1.0))).ok
    assert backends.payment.cards == []  # type: ignore[attr-defined]
    assert not (await events["c"](expired, AiBudget(1.0))).ok


class _Payment(payment_pb2_grpc.PaymentServicer):
    async def TokenizeBatch(self, request: Any, context: Any) -> Any:
        reply = payment_pb2.TokenizeReply(token="tok_real", brand="visa", last4="4242")
        outcome = payment_pb2.TokenizeOutcome(token=reply)
        return payment_pb2.TokenizeBatchReply(outcomes=[outcome] * len(request.cards))


async def test_a_card_exchanged_while_payment_is_still_starting_waits_for_it() -> None:
    """A channel that has not connected yet (payment starting, or restarting) is not a
    card processor that is down: the exchange waits for it within its deadline."""
    (port,) = free_ports(1)
    b = Backends(Settings(payment_address=f"127.0.0.1:{port}"))
    server = grpc.aio.server()
    try:
        exchange = asyncio.create_task(b.tokenize(CARD))  # nothing listens yet
        await asyncio.sleep(0.3)
        assert not exchange.done()
        payment_pb2_grpc.add_PaymentServicer_to_server(_Payment(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        result = await exchange
        assert (result.ok, result.payment_token) == (True, "tok_real")
    finally:
        await server.stop(None)
        await b.close()
