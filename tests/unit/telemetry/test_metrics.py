"""The metric definitions, the metrics port of a gRPC service and the /metrics handler."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from bookstore.ai.errors import (
    AiBudgetSpent,
    AiCircuitOpen,
    AiConnectionError,
    AiError,
    AiHttpError,
    AiNotJson,
    AiSchemaMismatch,
    AiTimeout,
    AiUnknownIds,
)
from bookstore.settings import SettingsError, from_env
from bookstore.telemetry import metrics

# name -> (type, label names): the contract the dashboard and the cluster view rely on.
EXPECTED = {
    "bookstore_checkouts": ("counter", {"outcome"}),
    "bookstore_checkout_duration_seconds": ("histogram", {"outcome"}),
    "bookstore_checkouts_waiting": ("gauge", set()),
    "bookstore_checkouts_in_flight": ("gauge", set()),
    "bookstore_admission_limit": ("gauge", set()),
    "bookstore_event_duration_seconds": ("histogram", {"event"}),
    "bookstore_ai_calls": ("counter", {"check", "outcome"}),
    "bookstore_ai_fallbacks": ("counter", {"check", "reason"}),
    "bookstore_cancels": ("counter", set()),
    "bookstore_clock_errors": ("counter", set()),
    "bookstore_queue_depth": ("gauge", set()),
    "bookstore_queue_oldest_age_seconds": ("gauge", set()),
    "bookstore_executions": ("counter", {"replica"}),
    "bookstore_leader_epoch": ("gauge", set()),
    "bookstore_leader_replica": ("gauge", set()),
    "bookstore_elections": ("counter", set()),
    "bookstore_lease_expiries": ("counter", set()),
    "bookstore_stock_copies": ("gauge", set()),
    "bookstore_replication_commit_index": ("gauge", set()),
    "bookstore_replication_lag_entries": ("gauge", set()),
    "bookstore_commit_decisions": ("counter", {"decision"}),
    "bookstore_batched_requests": ("histogram", {"service"}),
    "bookstore_in_doubt_transactions": ("gauge", set()),
    "bookstore_http_requests": ("counter", {"method", "route", "code"}),
    "bookstore_http_request_duration_seconds": ("histogram", {"route"}),
    "bookstore_grpc_server_handled": ("counter", {"method", "code"}),
    "bookstore_grpc_server_handling_seconds": ("histogram", {"method"}),
}


def _families() -> dict[str, tuple[str, set[str], list[dict[str, str]]]]:
    found = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        if family.name.startswith("bookstore_"):
            labels = [
                {k: v for k, v in s.labels.items() if k not in ("le",)} for s in family.samples
            ]
            names = set().union(*(set(label) for label in labels)) if labels else set()
            found[family.name] = (family.type, names, labels)
    return found


def test_every_metric_has_its_name_type_and_labels() -> None:
    found = _families()
    assert set(found) == set(EXPECTED)
    defined = {
        wrapper._name: set(wrapper._labelnames)
        for wrapper in vars(metrics).values()
        if isinstance(wrapper, MetricWrapperBase)
    }
    for name, (kind, labels) in EXPECTED.items():
        assert found[name][0] == kind, name
        assert defined[name] == labels, name
        if found[name][2]:  # the series exposed so far carry exactly those labels
            assert found[name][1] == labels, name


def test_label_combinations_exist_before_the_first_event() -> None:
    found = _families()
    outcomes = {s["outcome"] for s in found["bookstore_checkouts"][2]}
    assert outcomes == set(metrics.CHECKOUT_OUTCOMES)
    events = {s["event"] for s in found["bookstore_event_duration_seconds"][2]}
    assert events == set("abcdef")
    replicas = {s["replica"] for s in found["bookstore_executions"][2]}
    assert replicas == {"1", "2", "3", "4"}
    fallbacks = {(s["check"], s["reason"]) for s in found["bookstore_ai_fallbacks"][2]}
    assert len(fallbacks) == len(metrics.AI_CHECKS) * len(metrics.AI_FALLBACK_REASONS)


def test_process_metrics_are_exposed_too() -> None:
    names = {f.name for f in text_string_to_metric_families(metrics.exposition().decode())}
    assert "process_cpu_seconds" in names
    assert "python_gc_collections" in names


def test_metrics_ports_are_the_grpc_ports_plus_the_offset() -> None:
    settings = from_env({})
    assert metrics.metrics_bind_address(settings, "fraud-detection") == "127.0.0.1:51051"
    assert metrics.metrics_target(settings, "order-executor", 4) == "127.0.0.1:51058"
    containers = from_env(
        {
            "BOOKSTORE_BIND_HOST": "0.0.0.0",
            "ORDER_QUEUE_ADDRESS": "order-queue:50054",
            "BOOKSTORE_METRICS_PORT_OFFSET": "2000",
        }
    )
    assert metrics.metrics_bind_address(containers, "order-queue") == "0.0.0.0:52054"
    assert metrics.metrics_target(containers, "order-queue") == "order-queue:52054"


def test_offset_zero_turns_the_metrics_ports_off() -> None:
    settings = from_env({"BOOKSTORE_METRICS_PORT_OFFSET": "0"})
    assert metrics.metrics_bind_address(settings, "suggestions") is None
    assert metrics.metrics_target(settings, "suggestions") is None


def test_an_offset_past_the_last_port_names_the_variable() -> None:
    settings = from_env({"BOOKSTORE_METRICS_PORT_OFFSET": "20000"})
    with pytest.raises(SettingsError, match="BOOKSTORE_METRICS_PORT_OFFSET"):
        metrics.metrics_bind_address(settings, "fraud-detection")


@pytest.fixture
def metrics_server() -> Iterator[metrics.MetricsServer]:
    server = metrics.serve_metrics("127.0.0.1:0")
    yield server
    server.close()


def test_a_grpc_service_serves_its_metrics_over_http(
    metrics_server: metrics.MetricsServer,
) -> None:
    metrics.CANCELS.inc()
    answer = httpx.get(f"http://127.0.0.1:{metrics_server.port}/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    (cancels,) = [
        f for f in text_string_to_metric_families(answer.text) if f.name == "bookstore_cancels"
    ]
    total = [s.value for s in cancels.samples if s.name == "bookstore_cancels_total"]
    assert total and total[0] >= 1


def test_a_malformed_metrics_address_is_refused() -> None:
    with pytest.raises(SettingsError, match="host:port"):
        metrics.serve_metrics("nowhere")


def test_the_orchestrator_handler_answers_the_exposition() -> None:
    app = Starlette(routes=[Route("/metrics", metrics.metrics_endpoint)])
    metrics.CHECKOUTS.labels("approved").inc()
    with TestClient(app) as client:
        answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert 'bookstore_checkouts_total{outcome="approved"}' in answer.text


def test_every_ai_error_kind_has_a_fallback_reason() -> None:
    kinds = [
        error("x").kind
        for error in (AiConnectionError, AiTimeout, AiNotJson, AiSchemaMismatch, AiUnknownIds)
    ]
    kinds += [AiHttpError(503).kind, AiCircuitOpen().kind, AiBudgetSpent().kind, AiError().kind]
    reasons = [metrics.fallback_reason(kind) for kind in kinds]
    assert reasons == [
        "connection",
        "timeout",
        "not_json",
        "schema_mismatch",
        "unknown_ids",
        "http",
        "circuit_open",
        "budget_spent",
        "error",
    ]
    assert set(reasons) == set(metrics.AI_FALLBACK_REASONS)
    assert metrics.fallback_reason("something new") == "error"
