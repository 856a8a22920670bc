"""OpenTelemetry tracing: set up once per process, or not at all.

`setup_tracing` installs the SDK only when an OTLP endpoint is configured
(`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`); otherwise it
installs nothing and does not even import the SDK, and every span the code starts is
the API's no-op span, so tracing off costs a function call. The SDK and the exporter
read every other standard variable themselves: `OTEL_TRACES_SAMPLER` / `_ARG`,
`OTEL_EXPORTER_OTLP_HEADERS`, `_TIMEOUT`, `_INSECURE`, `OTEL_BSP_*`,
`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_SDK_DISABLED`. The exporter speaks OTLP over gRPC
(port 4317). Every exported span passes `sdk.RedactingSpanProcessor` (no card number).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from bookstore.settings import SettingsError

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider

# Long-lived streams (the choreography's sessions and exchanges, the execution feed,
# health watches) carry many orders: a span for one of them would last for hours and
# join no checkout's trace, so the gRPC instrumentation leaves them out.
_STREAMS = ("Session", "Exchange", "WatchExecutions", "Watch")

_enabled = False

_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_PROTOCOL_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")


def tracing_endpoint(env: Mapping[str, str] | None = None) -> str:
    """The OTLP endpoint spans go to; empty when tracing is off.

    Raises SettingsError, naming the variable, for a protocol other than gRPC.
    """
    e = os.environ if env is None else env
    if e.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ""
    endpoint = next((e[name] for name in _ENDPOINT_VARIABLES if e.get(name)), "")
    for name in _PROTOCOL_VARIABLES:
        protocol = e.get(name, "")
        if endpoint and protocol and protocol != "grpc":
            raise SettingsError(f"{name}={protocol!r}: only 'grpc' is supported")
    return endpoint


def enabled() -> bool:
    """Whether this process exports spans (callers skip span work when it does not)."""
    return _enabled


def setup_tracing(service_name: str, replica_id: int | None = None) -> TracerProvider | None:
    """Install the SDK with OTLP export if an endpoint is set; else install nothing.

    Returns the installed provider (flushed and shut down at exit), or None.
    """
    if not tracing_endpoint():
        return None
    # Imported here: with tracing off, neither the SDK nor the exporter is loaded.
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    from bookstore.telemetry.sdk import make_tracer_provider

    global _enabled
    provider = make_tracer_provider(service_name, OTLPSpanExporter(), replica_id)
    trace.set_tracer_provider(provider)
    _instrument_grpc()
    _enabled = True
    return provider


def _method_of(details: Any) -> str:
    """The method's name ("Reserve") of a call's details (its `method` may be bytes)."""
    method = details.method
    if isinstance(method, bytes):
        method = method.decode()
    return str(method).rpartition("/")[2]


def _continues_a_trace(details: Any) -> bool:
    """A server span only for a unary call that carries a trace context (traceparent)."""
    metadata = details.invocation_metadata or ()
    return any(item[0] == "traceparent" for item in metadata) and (
        _method_of(details) not in _STREAMS
    )


def _within_a_trace(details: Any) -> bool:
    """A client span only for a unary call made inside a recorded span."""
    return trace.get_current_span().is_recording() and _method_of(details) not in _STREAMS


def _instrument_grpc() -> None:
    """gRPC spans for unary calls, server and client (W3C context in the metadata).

    A gRPC span only ever continues a trace, never starts one: the background calls
    (Bully pings, the books database's replication and heartbeats, the leader's
    dequeue polls, health checks) belong to no checkout, and as roots of their own
    they were most of what a process exported. A checkout's calls all run inside its
    spans, so every one of them is still traced. The filters are plain functions:
    the instrumentation's own filter helpers cost a tenth of a busy process's CPU.
    """
    from opentelemetry.instrumentation.grpc import (
        GrpcAioInstrumentorClient,
        GrpcAioInstrumentorServer,
    )

    GrpcAioInstrumentorServer(filter_=_continues_a_trace).instrument()  # type: ignore[no-untyped-call]
    GrpcAioInstrumentorClient(filter_=_within_a_trace).instrument()  # type: ignore[no-untyped-call]


def instrument_app(app: FastAPI) -> None:
    """Server spans for every HTTP request of a FastAPI app, when tracing is on."""
    if not _enabled:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app, excluded_urls="metrics,healthz,api/charts", exclude_spans=["receive", "send"]
    )
