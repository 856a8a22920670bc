"""GET /api/cluster: every service with its health, the executors, the queue, the elections,
the books database's replicas, payment and the in-doubt transactions ("database", "payment",
"inDoubt"; not in "services" until `bookstore up` starts them).

Answers within about CLUSTER_TIMEOUT_S whatever is down: what does not answer in time
is shown unhealthy or unknown.
"""

from __future__ import annotations

import asyncio
import logging
import os

from fastapi import FastAPI
from starlette.responses import Response

from bookstore.orchestrator.components import CheckoutPipeline, Tracker, bounded
from bookstore.orchestrator.errors import json_response
from bookstore.orchestrator.pipeline import ServiceStats
from bookstore.orchestrator.probe import ClusterState, cluster_unknown
from bookstore.orchestrator.responses import ServiceRow, cluster_json
from bookstore.settings import CHECKOUT_SERVICES, Settings

log = logging.getLogger(__name__)

CLUSTER_TIMEOUT_S = 1.5


class ClusterRoute:
    def __init__(self, settings: Settings, pipeline: CheckoutPipeline, tracker: Tracker) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.tracker = tracker

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
        return json_response(cluster_json(services, state))

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
