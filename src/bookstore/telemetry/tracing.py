"""OpenTelemetry tracing: set up once per process, or not at all.

`setup_tracing` installs the SDK only when an OTLP endpoint is configured
(`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`); otherwise it
installs nothing, and every span the code starts is the API's no-op span, so tracing
off costs a function call. The SDK and the exporter read every other standard
variable themselves: `OTEL_TRACES_SAMPLER` / `_ARG`, `OTEL_EXPORTER_OTLP_HEADERS`,
`_TIMEOUT`, `_INSECURE`, `OTEL_BSP_*`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_SDK_DISABLED`.
The exporter speaks OTLP over gRPC (port 4317).

Every exported span passes `RedactingSpanProcessor`, which masks card-number-shaped
digit runs in the span's name, attributes, events, links and status with the same rule
as the logs (`bookstore.logs.redact`): whatever code sets, no card number leaves.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import (
    Event,
    ReadableSpan,
    Span,
    SpanProcessor,
    TracerProvider,
)
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Link, Status

from bookstore.logs import redact
from bookstore.settings import SettingsError

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


def make_tracer_provider(
    service_name: str, exporter: SpanExporter, replica_id: int | None = None
) -> TracerProvider:
    """A provider exporting in batches through `exporter`, card numbers masked.

    The sampler comes from OTEL_TRACES_SAMPLER (default: parent-based, always on).
    """
    attributes: dict[str, str | int] = {"service.name": service_name}
    if replica_id is not None:
        attributes["service.instance.id"] = f"{service_name}-{replica_id}"
        attributes["bookstore.replica_id"] = replica_id
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(RedactingSpanProcessor(BatchSpanProcessor(exporter)))
    return provider


def setup_tracing(service_name: str, replica_id: int | None = None) -> TracerProvider | None:
    """Install the SDK with OTLP export if an endpoint is set; else install nothing.

    Returns the installed provider (flushed and shut down at exit), or None.
    """
    if not tracing_endpoint():
        return None
    # Imported here: with tracing off, the exporter and its gRPC stack are never loaded.
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    provider = make_tracer_provider(service_name, OTLPSpanExporter(), replica_id)
    trace.set_tracer_provider(provider)
    return provider


def _clean(value: Any) -> Any:
    """An attribute value with card-shaped digit runs masked (strings, ints, nested)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bool | float | bytes) or value is None:
        return value
    if isinstance(value, int):
        text = str(value)
        masked = redact(text)
        return value if masked == text else masked
    if isinstance(value, Mapping):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, Sequence):
        return [_clean(item) for item in value]
    return value


def _clean_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return {key: _clean(value) for key, value in (attributes or {}).items()}


def redacted_span(span: ReadableSpan) -> ReadableSpan:
    """A copy of `span` with card-shaped digit runs masked everywhere text can hide."""
    description = span.status.description
    return ReadableSpan(
        name=redact(span.name),
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_clean_attributes(span.attributes),
        events=[
            Event(event.name, _clean_attributes(event.attributes), event.timestamp)
            for event in span.events
        ],
        links=[Link(link.context, _clean_attributes(link.attributes)) for link in span.links],
        kind=span.kind,
        status=Status(span.status.status_code, redact(description) if description else None),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class RedactingSpanProcessor(SpanProcessor):
    """Hands `inner` a card-number-free copy of every ended span."""

    def __init__(self, inner: SpanProcessor) -> None:
        self._inner = inner

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self._inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self._inner.on_end(redacted_span(span))

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)
