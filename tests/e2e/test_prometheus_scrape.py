"""A real Prometheus scrapes a metrics port served by `serve_metrics`, and every
dashboard query evaluates against it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from ports import free_ports
from prometheus_harness import RealPrometheus

from bookstore.telemetry import metrics

pytestmark = pytest.mark.e2e

DASHBOARD = (
    Path(__file__).resolve().parents[2] / "deploy/observability/grafana/dashboards/bookstore.json"
)


@pytest.fixture
def metrics_port() -> Iterator[int]:
    (port,) = free_ports(1)
    server = metrics.serve_metrics(f"127.0.0.1:{port}")
    yield server.port
    server.close()


def test_prometheus_scrapes_a_metrics_port_and_evaluates_the_dashboard(
    metrics_port: int,
) -> None:
    metrics.QUEUE_DEPTH.set(7)
    metrics.EXECUTIONS.labels("3").inc(2)
    with RealPrometheus({"order-queue": [f"127.0.0.1:{metrics_port}"]}) as prometheus:
        prometheus.wait_until('up{job="order-queue"} == 1')
        (depth,) = prometheus.wait_until("bookstore_queue_depth")
        assert float(depth["value"][1]) == 7
        (executed,) = prometheus.query('bookstore_executions_total{replica="3"}')
        assert float(executed["value"][1]) >= 2
        dashboard = json.loads(DASHBOARD.read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                prometheus.query(target["expr"])  # evaluates without an error
