"""POST /checkout: the course's checkout operation, as a list of named steps.

0. Admission (`admission_edge`, before this route): a checkout takes one of the
   slots, or waits for one; 503 BUSY with Retry-After only when it could not get one
   in time.
1. Read and validate the body (abort: 4xx); with an Idempotency-Key, a request seen
   before is answered as it was (`idempotency`), and the steps below run once per key.
2. Run the checkout services' pipeline (abort: 503 when a service is down or too slow).
3. A rejected order is answered at once.
4. Enqueue an approved order, retried by the tracker with back-off for
   `enqueue_retry_s` while the queue is down or restarting (abort: 503; "Order
   Approved" only once the queue has it on disk; an enqueue whose answer was lost
   counts once the queue knows the order).
5. Wait a bounded time for its execution (degrades to "queued").

Every answer is counted by outcome and timed (`bookstore_checkouts_total`,
`bookstore_checkout_duration_seconds`); with tracing on, the request's span carries
the order id, and so does every span of the checkout.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass

import orjson
from fastapi import FastAPI, Request
from opentelemetry.trace import get_current_span
from starlette.responses import Response

from bookstore.catalogue import Catalogue
from bookstore.grpcutil import ServiceUnavailable
from bookstore.orchestrator.components import bounded
from bookstore.orchestrator.errors import (
    ApiError,
    from_api_error,
    json_response,
    unavailable_response,
)
from bookstore.orchestrator.execution import ExecutionInfo, ExecutionTracker, QueuedItem
from bookstore.orchestrator.flow import Outcome
from bookstore.orchestrator.idempotency import (
    HEADER,
    IdempotencyKeys,
    checked_key,
    fingerprint,
)
from bookstore.orchestrator.models import CheckoutRequest
from bookstore.orchestrator.openapi import CHECKOUT_OPENAPI
from bookstore.orchestrator.parsing import parse_checkout, read_body
from bookstore.orchestrator.pipeline import Pipeline
from bookstore.orchestrator.responses import checkout_json
from bookstore.orchestrator.store import (
    APPROVED,
    ERROR,
    QUEUED,
    OrderItem,
    OrderRecord,
    OrderStore,
    apply_execution,
    checked_record,
)
from bookstore.settings import Settings
from bookstore.telemetry import metrics, propagation, tracing

log = logging.getLogger(__name__)
_TRACER = propagation.tracer(__name__)


@dataclass(eq=False)
class CheckoutRoute:
    settings: Settings
    pipeline: Pipeline
    tracker: ExecutionTracker
    catalogue: Catalogue
    store: OrderStore

    def __post_init__(self) -> None:
        kept = self.settings.idempotency_keys_kept, self.settings.idempotency_keys_bytes
        self.keys = IdempotencyKeys(*kept)

    async def checkout(self, request: Request) -> Response:
        # From its arrival at admission control (its wait for a slot included), if it came that way.
        started: float = getattr(request.state, "arrived", None) or time.perf_counter()
        response = await self._checkout(request)
        outcome = _outcome(response)
        metrics.CHECKOUTS.labels(outcome).inc()
        metrics.CHECKOUT_DURATION.labels(outcome).observe(time.perf_counter() - started)
        return response

    async def _checkout(self, request: Request) -> Response:
        try:
            body = await read_body(request, self.settings.max_body_bytes)
            checkout = parse_checkout(body, self.settings)
            key = checked_key(request.headers.get(HEADER))
            if key is None:
                return await self._place(checkout)
            digest = fingerprint(checkout.model_dump_json().encode())
            return await self.keys.answer(key, digest, lambda: self._place(checkout))
        except ApiError as exc:
            return from_api_error(exc)

    async def _place(self, checkout: CheckoutRequest) -> Response:
        """Steps 2 to 5: one order."""
        order_id = str(uuid.uuid4())
        if not tracing.enabled():
            return await self._run(order_id, checkout)
        get_current_span().set_attribute(propagation.ORDER_ID, order_id)
        return await self._run(order_id, checkout)

    async def _run(self, order_id: str, checkout: CheckoutRequest) -> Response:
        created = time.time()
        items = self._order_items(checkout)
        try:
            outcome = await self._check(order_id, created, items, checkout)
        except ServiceUnavailable as exc:
            return unavailable_response(exc)
        record = checked_record(order_id, created, items, outcome)
        if not outcome.approved:
            self.store.put(record)
            return json_response(checkout_json(record))
        try:
            await self._enqueue(checkout, record, outcome.payment_token)
        except ServiceUnavailable as exc:
            return unavailable_response(exc)
        await self._wait_executed(record)
        return json_response(checkout_json(record))

    async def _check(
        self, order_id: str, created: float, items: tuple[OrderItem, ...], checkout: CheckoutRequest
    ) -> Outcome:
        """Step 2. An order that could not be checked is stored as an error, and raises."""
        # The pipeline has its own checkout timeout, then waits up to one RPC
        # timeout for cancel acks; this is the backstop past both.
        backstop = self.settings.checkout_timeout_s + 2 * self.settings.rpc_timeout_s
        try:
            async with asyncio.timeout(backstop):
                return await self.pipeline.run(order_id, checkout)
        except ServiceUnavailable as exc:
            log.warning("order=%s not checked: %s", order_id, exc)
            self._put_error(order_id, created, items, f"{exc.service} unavailable")
            raise
        except TimeoutError:
            log.warning("order=%s not checked: pipeline timed out", order_id)
            self._put_error(order_id, created, items, "checkout timed out")
            raise ServiceUnavailable("checkout", "timed out") from None

    async def _enqueue(self, checkout: CheckoutRequest, record: OrderRecord, token: str) -> None:
        """Step 4. An order the queue does not have is stored as an error, and raises.

        It carries the payment token event c got for the card (never the card)
        and its amount: the catalogue's price_cents x quantity, summed."""
        order_id = record.order_id
        queued = [QueuedItem(i.book_id, i.title, i.quantity) for i in record.items]
        name = checkout.user.name if checkout.user and checkout.user.name else ""
        try:
            # The tracker retries for enqueue_retry_s while the queue restarts.
            budget = self.settings.enqueue_retry_s + self.settings.rpc_timeout_s * 2
            async with asyncio.timeout(budget):
                with propagation.order_step(_TRACER, "enqueue", order_id):
                    amount = self.catalogue.amount_cents(record.items)
                    await self.tracker.enqueue(
                        order_id, queued, name, payment_token=token, amount_cents=amount
                    )
        except (ServiceUnavailable, TimeoutError) as exc:
            # Outcome unknown: the queue may have it on disk all the same. Ask once;
            # only an order the queue does not know is reported as not queued.
            known = await bounded(self.tracker.status(order_id), self.settings.rpc_timeout_s)
            if not isinstance(known, ExecutionInfo):
                service = exc.service if isinstance(exc, ServiceUnavailable) else "order-queue"
                detail = exc.detail if isinstance(exc, ServiceUnavailable) else "timed out"
                log.warning("order=%s approved but not queued: %s", order_id, exc)
                record.status, record.reason = ERROR, f"{service} unavailable"
                self.store.put(record)
                raise ServiceUnavailable(service, detail) from None
            log.info("order=%s queued after all (the enqueue's answer was lost)", order_id)
        record.execution = QUEUED
        self.store.put(record)

    async def _wait_executed(self, record: OrderRecord) -> None:
        """Step 5: the execution, if it comes within the wait (else it stays "queued")."""
        wait = self.settings.execution_wait_s
        info = await bounded(self.tracker.wait_executed(record.order_id, wait), wait + 1.0)
        if isinstance(info, ExecutionInfo):
            apply_execution(record, info)
        elif isinstance(info, BaseException):
            log.warning("order=%s execution not confirmed: %r", record.order_id, info)

    def _order_items(self, checkout: CheckoutRequest) -> tuple[OrderItem, ...]:
        result = []
        for item in checkout.items or []:
            book = self.catalogue.resolve(item.bookId or "", item.name or "")
            result.append(
                OrderItem(
                    book_id=book.book_id if book else (item.bookId or ""),
                    title=book.title if book else (item.name or ""),
                    quantity=item.quantity or 0,
                )
            )
        return tuple(result)

    def _put_error(
        self, order_id: str, created: float, items: tuple[OrderItem, ...], why: str
    ) -> None:
        self.store.put(OrderRecord(order_id, ERROR, why, created, items))


def _outcome(response: Response) -> str:
    """The `outcome` label of a checkout's answer (a replayed one included)."""
    if response.status_code >= 500:
        return "unavailable"
    if response.status_code >= 400:
        return "invalid"
    approved = orjson.loads(response.body).get("status") == APPROVED
    return "approved" if approved else "rejected"


def install(app: FastAPI, route: CheckoutRoute) -> None:
    app.add_api_route(
        "/checkout",
        route.checkout,
        methods=["POST"],
        summary="Place an order at the online bookshop",
        **CHECKOUT_OPENAPI,
    )
