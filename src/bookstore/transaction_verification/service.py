"""The transaction-verification service: events a (items), b (user data), c (card).

- a: the rules of `checks.check_items`, then the stock of every book, read
  from the books database (an advisory read: the primary's applied stock, with
  no replication round; the reservation at execution is what counts). A
  book without the copies ordered rejects the order "out of stock:
  <titles>". The database unreachable degrades: the order goes on
  (`answeredBy: "fallback: books database unavailable"`), since execution
  reserves the copies anyway and rejects what cannot be filled.
- c: the card rules, then the card is exchanged for a payment token at the
  payment service (TokenizeBatch). Only the token travels on, in the event
  report; the card number and CVV stay here, in memory. Payment unreachable
  rejects the order (it could not be paid), with a reason saying to try again.
  Concurrent checkouts' cards travel together in one TokenizeBatch (a
  `Coalescer`), each answered on its own. The exchange starts as event a
  starts, when the card passes the rules: a token is sealed, not written
  (payment/tokens.py), so one made for an order that event a then rejects is
  simply dropped, and event c, which still runs only after a, takes it instead
  of a hop of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import cast

import grpc

from bookstore import grpcutil
from bookstore.ai.budget import AiBudget
from bookstore.batching import Coalescer
from bookstore.books_database.client import BooksDatabaseClient
from bookstore.bounded import BoundedMapping
from bookstore.catalogue import Catalogue, load_catalogue
from bookstore.choreography import server as choreography_server
from bookstore.choreography.engine import Participant
from bookstore.choreography.events import TV, EventResult, Handler
from bookstore.pb import checkout_pb2, payment_pb2, payment_pb2_grpc
from bookstore.settings import Settings
from bookstore.telemetry import tracing
from bookstore.transaction_verification import checks

log = logging.getLogger(__name__)

NAME = TV
EARLY_TOKENS = 1_000  # exchanges started for event c; those of orders a rejected age out
PAYMENT_DOWN = "We could not reach the card processor; please try again."


def _result(reason: str) -> EventResult:
    return EventResult(ok=not reason, reason=reason, answered_by="rules")


class Backends:
    """The books database and payment, as event a and c use them."""

    def __init__(self, settings: Settings) -> None:
        self.rpc_timeout_s = settings.rpc_timeout_s
        self.books = BooksDatabaseClient(
            settings.books_database_addresses,
            deadline_s=settings.rpc_timeout_s / 2,
            rpc_timeout_s=settings.rpc_timeout_s / 4,
        )
        self._channel = grpcutil.channel(settings.payment_address)
        self.payment = cast(
            "payment_pb2_grpc.PaymentAsyncStub", payment_pb2_grpc.PaymentStub(self._channel)
        )
        self._tokenizing: Coalescer[payment_pb2.TokenizeRequest, payment_pb2.TokenizeReply] = (
            Coalescer(self._tokenize_batch, "payment tokenize batch", service="payment")
        )
        self._early: BoundedMapping[str, asyncio.Task[EventResult]] = BoundedMapping(EARLY_TOKENS)

    async def close(self) -> None:
        for task in self._early.values():
            task.cancel()
        await self.books.close()
        await self._tokenizing.close()
        await self._channel.close()

    async def stock_reason(self, order: checkout_pb2.OrderData, catalogue: Catalogue) -> str:
        """ "out of stock: <titles>" for books lacking copies; raises ServiceUnavailable."""
        wanted: dict[str, int] = {}
        titles: dict[str, str] = {}
        for item in order.items:
            book = catalogue.resolve(item.book_id, item.title)
            if book is not None:
                wanted[book.book_id] = wanted.get(book.book_id, 0) + item.quantity
                titles[book.book_id] = book.title
        stock = await self.books.read_advisory(sorted(wanted))
        lacking = [titles[b] for b, n in wanted.items() if b in stock and stock[b].available < n]
        return "out of stock: " + ", ".join(lacking) if lacking else ""

    def tokenize_early(self, order: checkout_pb2.OrderData) -> None:
        """Start the exchange of a card that passes the rules, for event c to take."""
        key = order.order_id.value
        if key not in self._early and not checks.check_card(order.card):
            self._early[key] = asyncio.get_running_loop().create_task(self.tokenize(order.card))

    async def card_token(self, order: checkout_pb2.OrderData) -> EventResult:
        """The token started early, or one exchanged now."""
        early = self._early.pop(order.order_id.value, None)
        return await (early if early is not None else self.tokenize(order.card))

    async def tokenize(self, card: checkout_pb2.Card) -> EventResult:
        request = payment_pb2.TokenizeRequest(
            number=card.number, expiration=card.expiration, cvv=card.cvv
        )
        try:
            reply = await self._tokenizing.call(request)
        except grpc.aio.AioRpcError as exc:
            error = grpcutil.translate("payment", exc)
            if isinstance(error, grpcutil.ServiceUnavailable):
                log.warning("tokenize: %s", error)
                return EventResult(ok=False, reason=PAYMENT_DOWN, answered_by="fallback: payment")
            return _result(f"The card was refused: {error.message}")
        return EventResult(ok=True, answered_by="rules", payment_token=reply.token)

    async def _tokenize_batch(
        self, cards: Sequence[payment_pb2.TokenizeRequest]
    ) -> list[payment_pb2.TokenizeReply | BaseException]:
        batch = payment_pb2.TokenizeBatchRequest(cards=cards)
        # Waits for the channel within the deadline: a channel still (re)connecting, as
        # after payment's start or restart, is not a card processor that is down. (The
        # exchange writes nothing, so a late one is harmless.)
        reply = await self.payment.TokenizeBatch(
            batch,
            timeout=self.rpc_timeout_s,
            metadata=tracing.call_metadata(),
            wait_for_ready=True,
        )
        return [
            grpcutil.call_error(outcome.error.code, outcome.error.message)
            if outcome.HasField("error")
            else outcome.token
            for outcome in reply.outcomes
        ]


def handlers(catalogue: Catalogue, backends: Backends | None = None) -> dict[str, Handler]:
    """The three events; without `backends` (unit tests) only the rules run."""

    async def items(order: checkout_pb2.OrderData, budget: AiBudget) -> EventResult:
        reason = checks.check_items(order, catalogue)
        if reason or backends is None:
            return _result(reason)
        backends.tokenize_early(order)
        try:
            return _result(await backends.stock_reason(order, catalogue))
        except (grpcutil.ServiceUnavailable, grpcutil.Rejected) as exc:
            log.warning("order=%s stock not read: %s", order.order_id.value, exc)
            return EventResult(ok=True, answered_by="fallback: books database unavailable")

    async def user_data(order: checkout_pb2.OrderData, budget: AiBudget) -> EventResult:
        return _result(checks.check_user_data(order))

    async def card(order: checkout_pb2.OrderData, budget: AiBudget) -> EventResult:
        reason = checks.check_card(order.card)
        if reason or backends is None:
            return _result(reason)
        return await backends.card_token(order)

    return {"a": items, "b": user_data, "c": card}


def create_participant(
    settings: Settings, catalogue: Catalogue | None = None, backends: Backends | None = None
) -> Participant:
    return choreography_server.participant(
        settings, NAME, handlers(catalogue if catalogue is not None else load_catalogue(), backends)
    )


async def serve(settings: Settings, replica_id: int | None = None) -> None:
    backends = Backends(settings)
    try:
        await choreography_server.serve(settings, create_participant(settings, backends=backends))
    finally:
        await backends.close()
