"""Every Prometheus metric of the bookstore, and how each process serves them.

Names follow Prometheus' conventions: the `bookstore_` prefix, base units (seconds),
`_total` on counters, histograms for durations, and labels with a few fixed values
(never an order id or a book). Prometheus adds `job` and `instance` from its scrape
configuration, so no metric carries the service's name. Every label combination
listed below is created at import, so a series exists (at 0) before its first event.
docs/observability.md says what each metric means and which service sets it.

A gRPC service serves its metrics over HTTP on its own port + BOOKSTORE_METRICS_PORT_OFFSET
(default 1000: fraud detection 50051 -> 51051) with `serve_metrics`; the orchestrator
serves `/metrics` on its HTTP port with `metrics_endpoint`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from starlette.requests import Request
from starlette.responses import Response

from bookstore.settings import EXECUTOR_IDS, Settings, SettingsError, split_address

# Label values. Every label of every metric takes its values from one of these.
CHECKOUT_OUTCOMES = ("approved", "rejected", "invalid", "unavailable")
EVENTS = ("a", "b", "c", "d", "e", "f")
AI_CHECKS = ("user", "card", "suggestions")
AI_CALL_OUTCOMES = ("ok", "error")
# The AI error kinds (bookstore.ai.errors) as label values; see `fallback_reason`.
AI_FALLBACK_REASONS = (
    "connection",
    "http",
    "timeout",
    "not_json",
    "schema_mismatch",
    "unknown_ids",
    "circuit_open",
    "budget_spent",
    "error",
)
COMMIT_DECISIONS = ("commit", "abort")
# The services whose calls are batched (`bookstore.batching.Coalescer`).
BATCHED_SERVICES = ("books-database", "payment", "order-queue")
GRPC_OK = "OK"

# Latency buckets (seconds): a checkout takes ~5-100 ms here, an AI call up to seconds;
# 2 s is the bound an admitted checkout's p99 is held to under a flood (docs/admission.md).
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10)

# No `_created` series beside every counter and histogram: twice the series, and
# Prometheus' text format has no use for them.
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

# RED per service: requests, errors (code != OK / status >= 500), duration.
HTTP_REQUESTS = Counter(
    "bookstore_http_requests_total",
    "HTTP requests the orchestrator answered, by route template and status code.",
    ["method", "route", "code"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "bookstore_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template.",
    ["route"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
GRPC_HANDLED = Counter(
    "bookstore_grpc_server_handled_total",
    "gRPC calls a service finished, by method and status code.",
    ["method", "code"],
    registry=REGISTRY,
)
GRPC_DURATION = Histogram(
    "bookstore_grpc_server_handling_seconds",
    "Time a service spent on a unary gRPC call, by method.",
    ["method"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)

# Checkout (orchestrator).
CHECKOUTS = Counter(
    "bookstore_checkouts_total",
    "Checkouts answered, by outcome (approved, rejected, invalid: 400, unavailable: 503).",
    ["outcome"],
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "bookstore_batched_requests",
    "Requests carried by one batched call, by the service called.",
    ["service"],
    buckets=(1, 2, 4, 8, 16, 32, 64),
    registry=REGISTRY,
)
CHECKOUT_DURATION = Histogram(
    "bookstore_checkout_duration_seconds",
    "Time from a checkout's arrival to its answer, its wait for a slot included, by outcome "
    "(approved: admitted ones).",
    ["outcome"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
# Read from the admission control at each scrape (`admission_edge`), at no cost per request.
CHECKOUTS_WAITING = Gauge(
    "bookstore_checkouts_waiting",
    "Checkouts waiting for a slot (admission control's queue).",
    registry=REGISTRY,
)
ADMISSION_LIMIT = Gauge(
    "bookstore_admission_limit",
    "Checkouts allowed in flight: the maximum, or under an overload those that finish in "
    "the target time.",
    registry=REGISTRY,
)
CHECKOUTS_IN_FLIGHT = Gauge(
    "bookstore_checkouts_in_flight",
    "Checkouts admitted and not yet answered.",
    registry=REGISTRY,
)
CANCELS = Counter(
    "bookstore_cancels_total",
    "Orders cancelled across the checkout services after a failed event.",
    registry=REGISTRY,
)
CLOCK_ERRORS = Counter(
    "bookstore_clock_errors_total",
    "Vector-clock inconsistencies: a service's clock not <= the final one, or a late message.",
    registry=REGISTRY,
)

# Checkout services.
EVENT_DURATION = Histogram(
    "bookstore_event_duration_seconds",
    "Time a checkout event (a-f) took on its service.",
    ["event"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
AI_CALLS = Counter(
    "bookstore_ai_calls_total",
    "Calls to the AI, by check and outcome.",
    ["check", "outcome"],
    registry=REGISTRY,
)
AI_FALLBACKS = Counter(
    "bookstore_ai_fallbacks_total",
    "Checks the rules or the catalogue answered because the AI could not, by reason.",
    ["check", "reason"],
    registry=REGISTRY,
)

# Queue and executors.
QUEUE_DEPTH = Gauge(
    "bookstore_queue_depth",
    "Orders in the queue not yet executed (waiting or leased).",
    registry=REGISTRY,
)
QUEUE_OLDEST_AGE = Gauge(
    "bookstore_queue_oldest_age_seconds",
    "How long the oldest order not yet executed has waited (0 when the queue is empty).",
    registry=REGISTRY,
)
EXECUTIONS = Counter(
    "bookstore_executions_total",
    "Orders executed, by the replica id of the executor that ran them.",
    ["replica"],
    registry=REGISTRY,
)
LEADER_EPOCH = Gauge(
    "bookstore_leader_epoch",
    "The epoch (fencing token) of the current leader, as the queue issued it.",
    registry=REGISTRY,
)
LEADER_REPLICA = Gauge(
    "bookstore_leader_replica",
    "The replica id of the current leader (0: none registered).",
    registry=REGISTRY,
)
ELECTIONS = Counter(
    "bookstore_elections_total",
    "Bully elections an executor started.",
    registry=REGISTRY,
)
LEASE_EXPIRIES = Counter(
    "bookstore_lease_expiries_total",
    "Leases that ran out before their order was completed (the order is handed out again).",
    registry=REGISTRY,
)

# Stock, replication and commitment: set once those services exist.
STOCK_COPIES = Gauge(
    "bookstore_stock_copies",
    "Copies in stock, all books together (no per-book label: too many series).",
    registry=REGISTRY,
)
REPLICATION_COMMIT_INDEX = Gauge(
    "bookstore_replication_commit_index",
    "Index of the last replicated write known committed.",
    registry=REGISTRY,
)
REPLICATION_LAG = Gauge(
    "bookstore_replication_lag_entries",
    "Committed writes a replica has not applied yet.",
    registry=REGISTRY,
)
COMMIT_DECISIONS_TOTAL = Counter(
    "bookstore_commit_decisions_total",
    "Two-phase commit decisions, by decision.",
    ["decision"],
    registry=REGISTRY,
)
IN_DOUBT = Gauge(
    "bookstore_in_doubt_transactions",
    "Prepared transactions waiting for a decision.",
    registry=REGISTRY,
)


def _create(counter: Counter | Histogram, *labels: Iterable[str]) -> None:
    """Create every combination of `labels`' values, so each series starts at 0."""
    combos: list[tuple[str, ...]] = [()]
    for values in labels:
        combos = [(*combo, value) for combo in combos for value in values]
    for combo in combos:
        counter.labels(*combo)


_create(CHECKOUTS, CHECKOUT_OUTCOMES)
_create(CHECKOUT_DURATION, CHECKOUT_OUTCOMES)
_create(EVENT_DURATION, EVENTS)
_create(AI_CALLS, AI_CHECKS, AI_CALL_OUTCOMES)
_create(AI_FALLBACKS, AI_CHECKS, AI_FALLBACK_REASONS)
_create(EXECUTIONS, [str(i) for i in EXECUTOR_IDS])
_create(COMMIT_DECISIONS_TOTAL, COMMIT_DECISIONS)
_create(BATCH_SIZE, BATCHED_SERVICES)


def fallback_reason(kind: str) -> str:
    """The `reason` label of an AI error kind ("http 503" -> "http", "not json" -> "not_json")."""
    reason = kind.split(" ", 1)[0] if kind.startswith("http ") else kind.replace(" ", "_")
    return reason if reason in AI_FALLBACK_REASONS else "error"


# Fallbacks for which no call was made at all.
_NOT_CALLED = ("circuit_open", "budget_spent")


def count_ai(check: str, error_kind: str | None) -> None:
    """One AI-backed check: answered (`error_kind` None) or fallen back (its kind)."""
    if error_kind is None:
        AI_CALLS.labels(check, "ok").inc()
        return
    reason = fallback_reason(error_kind)
    if reason not in _NOT_CALLED:
        AI_CALLS.labels(check, "error").inc()
    AI_FALLBACKS.labels(check, reason).inc()


def exposition() -> bytes:
    """Every metric of this process in Prometheus' text format."""
    return generate_latest(REGISTRY)


async def metrics_endpoint(request: Request) -> Response:
    """The orchestrator's `GET /metrics` (a Starlette/FastAPI route handler)."""
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)


def _metrics_port(port: int, settings: Settings) -> int | None:
    if settings.metrics_port_offset == 0:
        return None
    metrics_port = port + settings.metrics_port_offset
    if metrics_port > 65535:
        raise SettingsError(
            f"BOOKSTORE_METRICS_PORT_OFFSET={settings.metrics_port_offset}: "
            f"port {port} + offset is past 65535"
        )
    return metrics_port


def metrics_bind_address(
    settings: Settings, service: str, replica_id: int | None = None
) -> str | None:
    """Where a gRPC service serves its metrics: its bind address's port + the offset.

    None when the metrics ports are off (offset 0).
    """
    host, port = split_address(settings.bind_address(service, replica_id), service)
    metrics_port = _metrics_port(port, settings)
    return None if metrics_port is None else f"{host}:{metrics_port}"


def metrics_target(settings: Settings, service: str, replica_id: int | None = None) -> str | None:
    """Where others scrape a gRPC service's metrics (for /api/cluster); None when off."""
    host, port = split_address(settings.address_of(service, replica_id), service)
    metrics_port = _metrics_port(port, settings)
    return None if metrics_port is None else f"{host}:{metrics_port}"


@dataclass
class MetricsServer:
    """A running metrics HTTP server (a daemon thread); `close` stops it."""

    server: WSGIServer
    thread: Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def serve_metrics(address: str) -> MetricsServer:
    """Serve this process's metrics over HTTP on `address` ("host:port"; port 0: any)."""
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise SettingsError(f"metrics address {address!r}: expected host:port")
    server, thread = start_http_server(int(port), host.strip("[]"), registry=REGISTRY)
    return MetricsServer(server, thread)
