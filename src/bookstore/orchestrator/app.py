"""The orchestrator's HTTP API (FastAPI): thin routes over the pipeline, tracker and store.

    POST /checkout        the course's checkout operation (routes/checkout.py)
    GET  /healthz         liveness
    GET  /api/books       the catalogue with live stock (?q= searches; ?title= ?author= ?genre=)
    GET  /orders/{id}     one order: status, events with their vector clocks, execution
    GET  /api/orders      recent orders, newest first
    GET  /metrics         this process's Prometheus metrics
    /api/cluster, /api/charts, /orders/{id}/replication, /orders/{id}/commitment
                          the cluster view's (bookstore.cluster_view.routes)
    /api/chaos...         the fault panel, load button and scenarios (chaos on only)

The HTTP contract is the course spec, tests/unit/orchestrator/data/bookstore-openapi.yaml
(README, "HTTP API"). Every response is JSON, its body built in `responses` (errors in
`errors`), and carries CORS headers (`edge.EdgeMiddleware`); bodies are read and validated
in `parsing`. Admission control (`admission_edge`) holds a POST /checkout beyond the
bound on checkouts in flight before any of that, and before the HTTP metrics. The shop
and the cluster view's pages (`bookstore.web.routes`) are served too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from fastapi import FastAPI
from starlette.responses import Response

from bookstore.catalogue import Catalogue, load_catalogue
from bookstore.chaos.scenarios import Chaos
from bookstore.cluster_view import routes as cluster_view
from bookstore.cluster_view.charts import ChartFeed
from bookstore.cluster_view.probe import ClusterProbe
from bookstore.orchestrator.admission import Admission
from bookstore.orchestrator.admission_edge import AdmissionMiddleware, admission_of
from bookstore.orchestrator.components import Component, lifespan_of
from bookstore.orchestrator.edge import EdgeMiddleware
from bookstore.orchestrator.error_handlers import install_error_handlers
from bookstore.orchestrator.errors import json_response
from bookstore.orchestrator.execution import ExecutionTracker
from bookstore.orchestrator.openapi import install_openapi
from bookstore.orchestrator.pipeline import Pipeline
from bookstore.orchestrator.routes import books, chaos, checkout, orders
from bookstore.orchestrator.stock import DatabaseStock
from bookstore.orchestrator.store import OrderStore
from bookstore.settings import Settings
from bookstore.telemetry import metrics, tracing
from bookstore.telemetry.http import HttpMetricsMiddleware
from bookstore.web import routes as web

C = TypeVar("C", bound=Component)


async def healthz() -> Response:
    return json_response({"status": "ok"})


def create_app(
    settings: Settings,
    pipeline: Pipeline | None = None,
    tracker: ExecutionTracker | None = None,
    *,
    catalogue: Catalogue | None = None,
    store: OrderStore | None = None,
    stock: DatabaseStock | None = None,
    cluster: ClusterProbe | None = None,
) -> FastAPI:
    """The orchestrator app.

    A pipeline, tracker, stock or cluster source not given is created here, and owned:
    the app's lifespan starts and closes it. Components given are the caller's to start.
    """
    owned: list[Component] = []
    pipeline = _own(pipeline, lambda: Pipeline(settings), owned)
    tracker = _own(tracker, lambda: ExecutionTracker(settings), owned)
    stock = _own(stock, lambda: DatabaseStock(settings), owned)
    cluster = _own(cluster, lambda: ClusterProbe(settings), owned)
    feed = _own(None, lambda: ChartFeed(settings), owned)
    catalogue = catalogue if catalogue is not None else load_catalogue()
    if store is None:
        store = OrderStore(settings.orders_kept, settings.orders_kept_bytes)
    admission = admission_of(settings)
    app = _bare_app(admission, owned)
    order_routes = orders.OrderRoutes(tracker, store)
    checkout.install(app, checkout.CheckoutRoute(settings, pipeline, tracker, catalogue, store))
    app.add_api_route("/healthz", healthz, methods=["GET"], summary="Liveness")
    books.install(app, books.BookRoutes(catalogue, stock))
    orders.install(app, order_routes)
    # Prometheus' text format, not JSON: outside the JSON API's OpenAPI document.
    app.add_api_route(
        "/metrics", metrics.metrics_endpoint, methods=["GET"], include_in_schema=False
    )
    routes = cluster_view.ClusterRoutes(settings, pipeline, cluster, admission)
    cluster_view.install(app, routes, feed)
    if settings.chaos:
        runner = _own(None, lambda: chaos_of(settings, tracker, cluster), owned)
        chaos.install(app, chaos.ChaosRoutes(settings, runner))
    web.install(app, get_order=order_routes.get_order)
    return app


def _own(given: C | None, make: Callable[[], C], owned: list[Component]) -> C:
    """`given`, or one made here and added to the components the app owns."""
    if given is not None:
        return given
    made = make()
    owned.append(made)
    return made


def _bare_app(admission: Admission, owned: list[Component]) -> FastAPI:
    """The app with its middleware, error handlers and OpenAPI document, and no route."""
    app = FastAPI(
        title="Online Bookshop Checkout API",
        version="1.0.0",
        description="The bookstore's orchestrator: the course's checkout operation and "
        "the shop's read API.",
        lifespan=lifespan_of(owned),
    )
    app.add_middleware(EdgeMiddleware)
    app.add_middleware(HttpMetricsMiddleware)
    app.add_middleware(AdmissionMiddleware, admission=admission)  # the last added runs first
    tracing.instrument_app(app)
    install_error_handlers(app)
    install_openapi(app)
    return app


def chaos_of(settings: Settings, tracker: ExecutionTracker, cluster: ClusterProbe) -> Chaos:
    """The load generator and scenario runner, reading executions from `tracker` and
    the leaders from `cluster`."""

    async def status_of(order_id: str) -> tuple[str, str | None] | None:
        info = await tracker.status(order_id)
        return None if info is None else (info.state, info.executed_at)

    async def leader() -> int | None:
        state = await cluster.state()
        return state.leader.replica_id if state.leader else None

    async def db_primary() -> int | None:
        state = await cluster.state()
        return next((r.replica_id for r in state.replicas if r.role == "primary"), None)

    return Chaos(
        settings.data_dir,
        settings.orchestrator_address,
        status_of,
        tracker.executions,
        leader,
        db_primary,
    )
