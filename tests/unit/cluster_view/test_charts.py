"""GET /api/charts, and the chart feed scraping the queue."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from bookstore.cluster_view.charts import ChartFeed
from bookstore.settings import Settings
from bookstore.telemetry import metrics

QUEUE_EXPOSITION = b"""bookstore_queue_depth 7
bookstore_executions_total{replica="2"} 3
bookstore_leader_epoch 5
bookstore_leader_replica 2
"""


def _sample(name: str, labels: dict[str, str] | None = None) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels or {}) or 0.0


async def test_charts_answer_the_series_even_before_the_first_point(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.get("/api/charts")
    assert answer.status_code == 200
    assert answer.json() == {"intervalS": 1.0, "points": []}


@pytest.fixture
def queue_metrics() -> Iterator[int]:
    """A stand-in for the queue's metrics port, serving a fixed exposition."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(QUEUE_EXPOSITION)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()
    thread.join()


async def test_the_feed_samples_its_own_metrics_and_the_queues(queue_metrics: int) -> None:
    # The queue's metrics port is its gRPC port + the offset.
    settings = Settings(order_queue_address=f"127.0.0.1:{queue_metrics - 1}", metrics_port_offset=1)
    own_depth = _sample("bookstore_queue_depth")
    feed = ChartFeed(settings, interval_s=0.05)
    await feed.start()
    try:
        for _ in range(200):  # the feed's own pace: a point every 0.05 s
            if len(feed.sampler.points()) >= 2:
                break
            await asyncio.sleep(0.05)
        body = json.loads((await feed.charts()).body)
    finally:
        await feed.close()
    point = body["points"][-1]
    assert point["queueDepth"] == own_depth + 7
    assert set(point["checkoutsPerS"]) == set(metrics.CHECKOUT_OUTCOMES)
    assert "2" in point["executionsPerS"]
