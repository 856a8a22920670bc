"""The cluster view's live chart series (GET /api/charts).

`ChartFeed` takes a snapshot once a second of the orchestrator's own metrics (checkouts
by outcome, checkout latency) and of the queue's, scraped from its metrics port
(depth, executions by replica, the leader's epoch and replica), and keeps the points in
`sampler.Sampler`'s ring buffer. A scrape that fails or takes longer than
SCRAPE_TIMEOUT_S leaves the queue's figures out of that snapshot; nothing waits on it.
Only the series a snapshot reads are collected and scraped (`name[]`): parsing the
queue's whole exposition took the event loop 20 ms a second, more under load, and
every request waiting behind it (a 503 BUSY too) waited that long.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from starlette.responses import Response

from bookstore.backoff import cancelled
from bookstore.cluster_view.sampler import SERIES, Sampler, snapshot_from_metrics
from bookstore.orchestrator.errors import json_response
from bookstore.settings import Settings
from bookstore.telemetry import metrics

log = logging.getLogger(__name__)

INTERVAL_S = 1.0
SCRAPE_TIMEOUT_S = 0.5


class ChartFeed:
    def __init__(self, settings: Settings, interval_s: float = INTERVAL_S) -> None:
        target = metrics.metrics_target(settings, "order-queue")
        wanted = "&".join(f"name[]={series}" for series in SERIES)
        self._queue_url = None if target is None else f"http://{target}/metrics?{wanted}"
        self._registry = metrics.REGISTRY.restricted_registry(SERIES)
        self._interval_s = interval_s
        self.sampler = Sampler()
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=SCRAPE_TIMEOUT_S)
        self._task = asyncio.create_task(self._run(), name="chart-feed")

    async def close(self) -> None:
        await cancelled(self._task)
        self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _run(self) -> None:
        while True:
            families = [*self._registry.collect(), *await self._scrape_queue()]
            self.sampler.record(snapshot_from_metrics(time.time(), families))
            await asyncio.sleep(self._interval_s)

    async def _scrape_queue(self) -> list[Metric]:
        if self._queue_url is None or self._client is None:
            return []
        try:
            answer = await self._client.get(self._queue_url)
            answer.raise_for_status()
            return list(text_string_to_metric_families(answer.text))
        except (httpx.HTTPError, ValueError) as exc:
            log.debug("queue metrics not scraped: %r", exc)
            return []

    async def charts(self) -> Response:
        return json_response({"intervalS": self._interval_s, "points": self.sampler.as_json()})
