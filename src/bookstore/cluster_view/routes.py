"""The cluster view's API, served by the orchestrator's app.

    GET /api/cluster                 every service and the cluster's state (below)
    GET /api/charts                  the live chart series (`charts`)
    GET /orders/{id}/replication     what each books-database replica did with the
                                     order's reserve, commit or release (appended,
                                     stored, acked, applied, at which log position);
                                     "answered" names the replicas that did
    GET /orders/{id}/commitment      the order's two-phase commit: prepare, vote,
                                     decision, logged, ack messages between its
                                     coordinator, the decision log and the participants

GET /api/cluster: every service with its health, the executors, the queue, the elections,
the books database's replicas, payment and the in-doubt transactions ("database", "payment",
"inDoubt"; not in "services" until `bookstore up` starts them), and the orchestrator's
admission control ("admission": checkouts in flight and the bound on them, checkouts
waiting for a slot, and whether the queue is standing: an overload).

Each service's row names where its metrics are served (`metrics`: a URL, or null when
the metrics ports are off; the orchestrator's own `/metrics` always).

Answers within about CLUSTER_TIMEOUT_S whatever is down: what does not answer in time
is shown unhealthy or unknown.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time

from fastapi import FastAPI
from starlette.responses import Response

from bookstore.books_database.stock import MAX_ID
from bookstore.cluster_view.charts import ChartFeed
from bookstore.cluster_view.probe import ClusterProbe
from bookstore.cluster_view.responses import (
    ServiceRow,
    admission_json,
    cluster_json,
    commitment_json,
    replication_json,
)
from bookstore.cluster_view.state import ClusterState, cluster_unknown
from bookstore.orchestrator.admission import Admission
from bookstore.orchestrator.components import bounded
from bookstore.orchestrator.errors import error_response, json_response
from bookstore.orchestrator.pipeline import Pipeline, ServiceStats
from bookstore.settings import CHECKOUT_SERVICES, Settings
from bookstore.telemetry.metrics import metrics_target

log = logging.getLogger(__name__)

CLUSTER_TIMEOUT_S = 1.5


@dataclasses.dataclass(eq=False)
class ClusterRoutes:
    settings: Settings
    pipeline: Pipeline
    probe: ClusterProbe
    admission: Admission

    async def cluster(self) -> Response:
        stats, state = await asyncio.gather(
            bounded(self.pipeline.stats(), CLUSTER_TIMEOUT_S),
            bounded(self.probe.state(), CLUSTER_TIMEOUT_S),
        )
        if not isinstance(stats, list):
            log.warning("checkout services' stats unavailable: %r", stats)
            stats = self._checkout_unknown()
        if not isinstance(state, ClusterState):
            log.warning("queue and executors' state unavailable: %r", state)
            state = cluster_unknown(self.settings)
        me = ServiceRow("orchestrator", self.settings.orchestrator_address, os.getpid(), True)
        checkout = [
            ServiceRow(s.service, s.address, s.pid, s.healthy, cached_orders=s.cached_orders)
            for s in stats
        ]
        services = [me, *checkout, *self._queue_rows(state)]
        body = cluster_json([self._with_metrics(s) for s in services], state)
        body["admission"] = admission_json(self.admission, time.perf_counter())
        return json_response(body)

    def _with_metrics(self, row: ServiceRow) -> ServiceRow:
        if row.name == "orchestrator":
            url: str | None = f"http://{self.settings.orchestrator_address}/metrics"
        else:
            target = metrics_target(self.settings, row.name, row.replica_id)
            url = None if target is None else f"http://{target}/metrics"
        return dataclasses.replace(row, metrics=url)

    def _checkout_unknown(self) -> list[ServiceStats]:
        return [
            ServiceStats(name, self.settings.checkout_address(name), False, None, None)
            for name in CHECKOUT_SERVICES
        ]

    def _queue_rows(self, state: ClusterState) -> list[ServiceRow]:
        queue = state.queue
        rows = [
            ServiceRow("order-queue", self.settings.order_queue_address, queue.pid, queue.healthy)
        ]
        rows += [
            ServiceRow("order-executor", e.address, e.pid, e.alive, replica_id=e.replica_id)
            for e in state.executors
        ]
        return rows

    async def replication(self, order_id: str) -> Response:
        if len(order_id) > MAX_ID:
            return _bad_order_id()
        return json_response(replication_json(order_id, await self.probe.replication(order_id)))

    async def commitment(self, order_id: str) -> Response:
        if len(order_id) > MAX_ID:
            return _bad_order_id()
        return json_response(commitment_json(order_id, await self.probe.commitment(order_id)))


def _bad_order_id() -> Response:
    return error_response(400, "BAD_ORDER_ID", f"An order id has at most {MAX_ID} characters.")


def install(app: FastAPI, routes: ClusterRoutes, feed: ChartFeed) -> None:
    app.add_api_route("/api/cluster", routes.cluster, methods=["GET"], summary="Every service")
    app.add_api_route("/api/charts", feed.charts, methods=["GET"], summary="Live chart series")
    app.add_api_route(
        "/orders/{order_id}/replication",
        routes.replication,
        methods=["GET"],
        summary="An order's replication steps in the books database",
    )
    app.add_api_route(
        "/orders/{order_id}/commitment",
        routes.commitment,
        methods=["GET"],
        summary="An order's two-phase commit messages",
    )
