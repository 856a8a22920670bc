"""The orchestrator's HTTP API (FastAPI).

    POST /checkout        the course's checkout operation (see CONTRACT.md)
    GET  /healthz         liveness
    GET  /api/books       the catalogue (?q= searches; ?title= ?author= ?genre= narrow)
    GET  /orders/{id}     one order: status, events with their vector clocks, execution
    GET  /api/orders      recent orders, newest first
    GET  /api/cluster     every service: address, pid, health, cache size; queue and leader

The checkout itself is a list of named steps (`Orchestrator.checkout`): read and validate
the body (abort: 4xx), run the pipeline (abort: 503 when a service is down),
enqueue an approved order (abort: 503; "Order Approved" only once the queue
has it on disk), wait a bounded time for its execution (degrades to "queued").
Every response is JSON and carries CORS headers (`edge.EdgeMiddleware`);
bodies are read and validated in `parsing`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from bookstore.catalogue import Book, Catalogue, load_catalogue
from bookstore.grpcutil import ServiceUnavailable
from bookstore.orchestrator.edge import EdgeMiddleware
from bookstore.orchestrator.errors import (
    ApiError,
    error_body,
    error_response,
    from_api_error,
    json_response,
)
from bookstore.orchestrator.execution import ExecutionInfo, QueuedItem, cluster_unknown
from bookstore.orchestrator.flow import Outcome
from bookstore.orchestrator.models import CheckoutRequest, ErrorResponse, OrderStatusResponse
from bookstore.orchestrator.parsing import field_path, parse_checkout, read_body
from bookstore.orchestrator.pipeline import ServiceStats
from bookstore.orchestrator.store import (
    APPROVED,
    ERROR,
    QUEUED,
    REJECTED,
    OrderItem,
    OrderRecord,
    OrderStore,
    books_json,
    compact_book,
    compact_event,
    execution_json,
)
from bookstore.settings import CHECKOUT_SERVICES, Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
GetOrder = Callable[[str], Awaitable[dict[str, Any] | None]]

CLUSTER_TIMEOUT_S = 1.5  # /api/cluster answers within about this, whatever is down
STATUS_TIMEOUT_S = 1.0  # refreshing one order's execution state
REFRESH_MAX = 50  # GET /api/orders refreshes at most this many unexecuted orders


class CheckoutPipeline(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def run(self, order_id: str, request: CheckoutRequest) -> Outcome: ...
    async def stats(self) -> list[ServiceStats]: ...


class Tracker(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def enqueue(self, order_id: str, items: list[QueuedItem], customer_name: str) -> None: ...
    async def wait_executed(self, order_id: str, timeout: float) -> ExecutionInfo | None: ...
    async def status(self, order_id: str) -> ExecutionInfo | None: ...
    async def cluster(self) -> dict[str, Any]: ...


# ------------------------------------------------------------------ JSON shapes


def book_json(book: Book) -> dict[str, Any]:
    return {
        "bookId": book.book_id,
        "title": book.title,
        "author": book.author,
        "genre": book.genre,
        "price": book.price,
        "stock": book.stock,
    }


def _record(
    order_id: str, created: float, items: tuple[OrderItem, ...], outcome: Outcome
) -> OrderRecord:
    return OrderRecord(
        order_id=order_id,
        status=APPROVED if outcome.approved else REJECTED,
        reason=None if outcome.approved else outcome.reason,
        created_at=created,
        items=items,
        suggested_books=tuple(compact_book(b) for b in outcome.suggestions)
        if outcome.approved
        else (),
        vector_clock=None if outcome.final_clock is None else tuple(outcome.final_clock),
        events=tuple(compact_event(e) for e in outcome.events),
        cancel_clocks={s: tuple(c) for s, c in outcome.cancel_clocks.items()}
        if outcome.cancel_clocks
        else None,
        clock_errors=tuple(outcome.clock_errors),
    )


def _awaiting_execution(record: OrderRecord) -> bool:
    execution = record.execution
    return record.status == APPROVED and (execution is None or execution.state != "executed")


def _unavailable(exc: ServiceUnavailable) -> Response:
    body = error_body(
        "SERVICE_UNAVAILABLE",
        f"The {exc.service} service is not answering right now. Please try again shortly.",
    )
    body["error"]["service"] = exc.service
    return json_response(body, 503)


# ------------------------------------------------------------------------ the app


async def _bounded(awaitable: Awaitable[T], timeout: float) -> T | BaseException:
    try:
        async with asyncio.timeout(timeout):
            return await awaitable
    except Exception as exc:
        return exc


class Orchestrator:
    """The route handlers, over an injected pipeline, tracker, catalogue and store."""

    def __init__(
        self,
        settings: Settings,
        pipeline: CheckoutPipeline,
        tracker: Tracker,
        catalogue: Catalogue,
        store: OrderStore,
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.tracker = tracker
        self.catalogue = catalogue
        self.store = store
        self._books = {b.book_id: book_json(b) for b in catalogue.all()}

    # POST /checkout
    async def checkout(self, request: Request) -> Response:
        settings = self.settings
        try:
            body = await read_body(request, settings.max_body_bytes)
            checkout = parse_checkout(body, settings)
        except ApiError as exc:
            return from_api_error(exc)
        order_id = str(uuid.uuid4())
        created = time.time()
        items = self._order_items(checkout)
        try:
            # The pipeline has its own checkout timeout, then waits up to one RPC
            # timeout for cancel acks; this is the backstop past both.
            backstop = settings.checkout_timeout_s + 2 * settings.rpc_timeout_s
            async with asyncio.timeout(backstop):
                outcome = await self.pipeline.run(order_id, checkout)
        except ServiceUnavailable as exc:
            log.warning("order=%s not checked: %s", order_id, exc)
            self._put_error(order_id, created, items, f"{exc.service} unavailable")
            return _unavailable(exc)
        except TimeoutError:
            log.warning("order=%s not checked: pipeline timed out", order_id)
            self._put_error(order_id, created, items, "checkout timed out")
            return _unavailable(ServiceUnavailable("checkout", "timed out"))
        record = _record(order_id, created, items, outcome)
        if not outcome.approved:
            self.store.put(record)
            return json_response(
                {
                    "orderId": order_id,
                    "status": REJECTED,
                    "suggestedBooks": [],
                    "reason": outcome.reason,
                    "vectorClock": None
                    if record.vector_clock is None
                    else list(record.vector_clock),
                }
            )
        return await self._enqueue_and_wait(checkout, record)

    async def _enqueue_and_wait(self, checkout: CheckoutRequest, record: OrderRecord) -> Response:
        order_id = record.order_id
        queued = [QueuedItem(i.book_id, i.title, i.quantity) for i in record.items]
        name = checkout.user.name if checkout.user and checkout.user.name else ""
        try:
            async with asyncio.timeout(self.settings.rpc_timeout_s * 2):
                await self.tracker.enqueue(order_id, queued, name)
        except (ServiceUnavailable, TimeoutError) as exc:
            # Outcome unknown: the queue may have it on disk all the same. Ask once;
            # only an order the queue does not know is reported as not queued.
            known = await _bounded(self.tracker.status(order_id), self.settings.rpc_timeout_s)
            if not isinstance(known, ExecutionInfo):
                service = exc.service if isinstance(exc, ServiceUnavailable) else "order-queue"
                log.warning("order=%s approved but not queued: %s", order_id, exc)
                record.status, record.reason = ERROR, f"{service} unavailable"
                self.store.put(record)
                return _unavailable(ServiceUnavailable(service, "not queued"))
            log.info("order=%s queued after all (the enqueue's answer was lost)", order_id)
        record.execution = QUEUED
        self.store.put(record)
        wait = self.settings.execution_wait_s
        info = await _bounded(self.tracker.wait_executed(order_id, wait), wait + 1.0)
        if isinstance(info, ExecutionInfo):
            record.execution = info
        elif isinstance(info, BaseException):
            log.warning("order=%s execution not confirmed: %r", order_id, info)
        return json_response(
            {
                "orderId": order_id,
                "status": APPROVED,
                "suggestedBooks": books_json(record.suggested_books),
                "vectorClock": None if record.vector_clock is None else list(record.vector_clock),
                "execution": execution_json(record.execution),
            }
        )

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

    # GET /orders/{order_id}
    async def get_order(self, order_id: str) -> dict[str, Any] | None:
        record = self.store.get(order_id)
        if record is None:
            return None
        if _awaiting_execution(record):
            await self._refresh(record)
        return record.to_json()

    async def _refresh(self, record: OrderRecord) -> None:
        """Ask the queue how far an approved order got (bounded; keeps the old state on error)."""
        info = await _bounded(self.tracker.status(record.order_id), STATUS_TIMEOUT_S)
        if isinstance(info, ExecutionInfo):
            record.execution = info

    async def order(self, order_id: str) -> Response:
        found = await self.get_order(order_id)
        if found is None:
            return error_response(404, "ORDER_NOT_FOUND", f"No order {order_id[:64]} is known.")
        return json_response(found)

    # GET /api/orders
    async def orders(self, limit: int = 20) -> Response:
        limit = max(1, min(limit, 1000))
        records = self.store.recent(limit)
        stale = [r for r in records if _awaiting_execution(r)][:REFRESH_MAX]
        if stale:
            await asyncio.gather(*(self._refresh(r) for r in stale))
        return json_response({"orders": [r.summary() for r in records]})

    # GET /api/books
    async def books(
        self,
        q: str = "",
        title: str = "",
        author: str = "",
        genre: str = "",
    ) -> Response:
        found = self.catalogue.search(q) if q else self.catalogue.all()
        for field, value in (("title", title), ("author", author), ("genre", genre)):
            if value:
                keep = {b.book_id for b in self.catalogue.search(value, field)}
                found = [b for b in found if b.book_id in keep]
        return json_response([self._books[b.book_id] for b in found])

    # GET /api/cluster
    async def cluster(self) -> Response:
        stats, tracked = await asyncio.gather(
            _bounded(self.pipeline.stats(), CLUSTER_TIMEOUT_S),
            _bounded(self.tracker.cluster(), CLUSTER_TIMEOUT_S),
        )
        services: list[dict[str, Any]] = [
            {
                "name": "orchestrator",
                "replicaId": None,
                "address": self.settings.orchestrator_address,
                "pid": os.getpid(),
                "healthy": True,
                "cachedOrders": None,
            }
        ]
        if isinstance(stats, list):
            services += [
                {
                    "name": s.service,
                    "replicaId": None,
                    "address": s.address,
                    "pid": s.pid,
                    "healthy": s.healthy,
                    "cachedOrders": s.cached_orders,
                }
                for s in stats
            ]
        else:
            log.warning("checkout services' stats unavailable: %r", stats)
            services += [
                {
                    "name": name,
                    "replicaId": None,
                    "address": self.settings.checkout_address(name),
                    "pid": None,
                    "healthy": False,
                    "cachedOrders": None,
                }
                for name in CHECKOUT_SERVICES
            ]
        if not isinstance(tracked, dict):
            log.warning("queue and executors' state unavailable: %r", tracked)
            tracked = cluster_unknown(self.settings)
        services += self._queue_services(tracked)
        return json_response({"services": services, **tracked})

    def _queue_services(self, tracked: dict[str, Any]) -> list[dict[str, Any]]:
        queue = tracked.get("queue") or {}
        result: list[dict[str, Any]] = [
            {
                "name": "order-queue",
                "replicaId": None,
                "address": self.settings.order_queue_address,
                "pid": queue.get("pid"),
                "healthy": bool(queue.get("healthy")),
                "cachedOrders": None,
            }
        ]
        for executor in tracked.get("executors") or []:
            result.append(
                {
                    "name": "order-executor",
                    "replicaId": executor.get("replicaId"),
                    "address": executor.get("address"),
                    "pid": executor.get("pid"),
                    "healthy": bool(executor.get("alive")),
                    "cachedOrders": None,
                }
            )
        return result


def _error_code(status: int) -> str:
    return {
        400: "BAD_REQUEST",
        404: "NOT_FOUND",
        405: "METHOD_NOT_ALLOWED",
        413: "BODY_TOO_LARGE",
    }.get(status, "HTTP_ERROR")


def _install_error_handlers(app: FastAPI) -> None:
    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        message = exc.detail if isinstance(exc.detail, str) else "Request failed."
        if exc.status_code == 404:
            message = f"Nothing at {request.url.path[:200]}."
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path[:200]}."
        response = error_response(exc.status_code, _error_code(exc.status_code), message)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = list(exc.errors())[:5]
        described = []
        for error in errors:
            loc = tuple(error.get("loc", ()))
            if loc and loc[0] in ("query", "path", "body", "header"):
                loc = loc[1:]
            described.append(f"{field_path(loc)}: {error.get('msg', 'invalid')}")
        return error_response(400, "INVALID_REQUEST", "; ".join(described) or "Invalid request.")

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)


def _install_openapi(app: FastAPI) -> None:
    """Our generated document, with the course's CheckoutRequest as /checkout's body."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        _, top = models_json_schema(
            [(CheckoutRequest, "validation")], ref_template="#/components/schemas/{model}"
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, definition in top.get("$defs", {}).items():
            components.setdefault(name, definition)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _error_responses() -> dict[int | str, dict[str, Any]]:
    described = {
        400: "Malformed request: not JSON, not an object, a wrong field type, or over a limit",
        413: "Request body too large",
        500: "Server error",
        503: "A service needed for the checkout is down or too slow",
    }
    return {code: {"model": ErrorResponse, "description": d} for code, d in described.items()}


def create_app(
    settings: Settings,
    pipeline: CheckoutPipeline | None = None,
    tracker: Tracker | None = None,
    *,
    catalogue: Catalogue | None = None,
    store: OrderStore | None = None,
    manage: bool | None = None,
) -> FastAPI:
    """The orchestrator app.

    A pipeline or tracker not given is created here. The lifespan starts and
    closes the components the app owns: those it created, or all of them when
    `manage` is True (False: none).
    """
    owned: list[CheckoutPipeline | Tracker] = []
    if pipeline is None:
        from bookstore.orchestrator.pipeline import Pipeline

        pipeline = Pipeline(settings)
        owned.append(pipeline)
    if tracker is None:
        from bookstore.orchestrator.execution import ExecutionTracker

        tracker = ExecutionTracker(settings)
        owned.append(tracker)
    if manage is not None:
        owned = [pipeline, tracker] if manage else []
    api = Orchestrator(
        settings,
        pipeline,
        tracker,
        catalogue if catalogue is not None else load_catalogue(),
        store if store is not None else OrderStore(settings.orders_kept),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        started: list[CheckoutPipeline | Tracker] = []
        try:
            for component in owned:
                await component.start()
                started.append(component)
            yield
        finally:
            for component in reversed(started):
                try:
                    await component.close()
                except Exception:
                    log.exception("closing %s failed", type(component).__name__)

    app = FastAPI(
        title="Online Bookshop Checkout API",
        version="1.0.0",
        description="The bookstore's orchestrator: the course's checkout operation and "
        "the shop's read API.",
        lifespan=lifespan,
    )
    app.state.orchestrator = api
    app.add_middleware(EdgeMiddleware)
    _install_error_handlers(app)
    _install_openapi(app)

    async def healthz() -> Response:
        return json_response({"status": "ok"})

    app.add_api_route(
        "/checkout",
        api.checkout,
        methods=["POST"],
        summary="Place an order at the online bookshop",
        responses={
            200: {"model": OrderStatusResponse, "description": "Order approval or rejection"},
            **_error_responses(),
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/CheckoutRequest"}}
                },
            }
        },
    )
    app.add_api_route("/healthz", healthz, methods=["GET"], summary="Liveness")
    app.add_api_route("/api/books", api.books, methods=["GET"], summary="The catalogue")
    app.add_api_route("/api/orders", api.orders, methods=["GET"], summary="Recent orders")
    app.add_api_route("/api/cluster", api.cluster, methods=["GET"], summary="Every service")
    app.add_api_route("/orders/{order_id}", api.order, methods=["GET"], summary="One order")
    _install_web(app, api.get_order)
    return app


def _install_web(app: FastAPI, get_order: GetOrder) -> None:
    try:
        from bookstore.web import routes
    except ImportError:
        return
    install = getattr(routes, "install", None)
    if callable(install):
        install(app, get_order=get_order)
