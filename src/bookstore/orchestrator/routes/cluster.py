"""GET /api/cluster: every service with its health, the executors, the queue, the elections,
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

from bookstore.orchestrator.admission import Admission
from bookstore.orchestrator.components import CheckoutPipeline, Tracker, bounded
from bookstore.orchestrator.errors import json_response
from bookstore.orchestrator.pipeline import ServiceStats
from bookstore.orchestrator.probe import ClusterState, cluster_unknown
from bookstore.orchestrator.responses import ServiceRow, admission_json, cluster_json
from bookstore.settings import CHECKOUT_SERVICES, Settings
from bookstore.telemetry.metrics import metrics_target

log = logging.getLogger(__name__)

CLUSTER_TIMEOUT_S = 1.5


class ClusterRoute:
    def __init__(
        self,
        settings: Settings,
        pipeline: CheckoutPipeline,
        tracker: Tracker,
        admission: Admission,
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.tracker = tracker
        self.admission = admission

    async def cluster(self) -> Response:
        stats, state = await asyncio.gather(
            bounded(self.pipeline.stats(), CLUSTER_TIMEOUT_S),
            bounded(self.tracker.cluster(), CLUSTER_TIMEOUT_S),
        )
        if not isinstance(stats, list):
            log.warning("checkout services' stats unavailable: %r", stats)
            stats = self._checkout_unknown()
        if not isinstance(state, ClusterState):
            log.warning("queue and executors' state unavailable: %r", state)
            state = cluster_unknown(self.settings)
        me = ServiceRow("orchestrator", self.settings.orchestrator_address, os.getpid(), True)
        services = [me, *(self._checkout_row(s) for s in stats), *self._queue_rows(state)]
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

    @staticmethod
    def _checkout_row(stats: ServiceStats) -> ServiceRow:
        return ServiceRow(
            stats.service,
            stats.address,
            stats.pid,
            stats.healthy,
            cached_orders=stats.cached_orders,
        )

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


def install(app: FastAPI, route: ClusterRoute) -> None:
    app.add_api_route("/api/cluster", route.cluster, methods=["GET"], summary="Every service")
