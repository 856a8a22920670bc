"""The OpenTelemetry SDK part of tracing, imported only when tracing is on.

`make_tracer_provider` builds a provider whose every exported span passes
`RedactingSpanProcessor`, which masks card-number-shaped digit runs in the
span's name, attributes, events, links and status with the same rule as the logs
(`bookstore.logs.redact`): whatever code sets, no card number leaves.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

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

from bookstore.logs import has_card_number, redact
from bookstore.telemetry.trace_sampling import sampler_from_env


def make_tracer_provider(
    service_name: str, exporter: SpanExporter, replica_id: int | None = None
) -> TracerProvider:
    """A provider exporting in batches through `exporter`, card numbers masked.

    The sampler comes from OTEL_TRACES_SAMPLER (default: parent-based, 10% of the
    checkouts; `trace_sampling`).
    """
    attributes: dict[str, str | int] = {"service.name": service_name}
    if replica_id is not None:
        attributes["service.instance.id"] = f"{service_name}-{replica_id}"
        attributes["bookstore.replica_id"] = replica_id
    resource = Resource.create(attributes)
    provider = TracerProvider(
        sampler=sampler_from_env(os.environ),
        resource=_HashedOnce(resource.attributes, resource.schema_url),
    )
    provider.add_span_processor(RedactingSpanProcessor(BatchSpanProcessor(exporter)))
    return provider


class _HashedOnce(Resource):
    """A Resource that computes its hash once. The OTLP exporter groups spans by
    resource, hashing each span's, and `Resource.__hash__` dumps the attributes as
    JSON every time: a quarter of the exporter's CPU. A resource never changes."""

    def __init__(self, attributes: Mapping[str, Any], schema_url: str | None = None) -> None:
        super().__init__(attributes, schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash


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


# A card-shaped run has at least this many digits (`bookstore.logs`): shorter text
# and smaller numbers cannot hold one, and most attributes are those.
_PAN_MIN_DIGITS = 12
_PAN_MIN_INT = 10 ** (_PAN_MIN_DIGITS - 1)


def _dirty_text(text: str) -> bool:
    return len(text) >= _PAN_MIN_DIGITS and has_card_number(text)


def _dirty(value: Any) -> bool:
    """Whether `_clean` would change `value` (the common cases first, no regex for
    what is too short to hold a card number)."""
    if isinstance(value, str):
        return _dirty_text(value)
    if isinstance(value, bool | float | bytes) or value is None:
        return False
    if isinstance(value, int):
        return abs(value) >= _PAN_MIN_INT and has_card_number(str(value))
    if isinstance(value, tuple | list):
        return any(_dirty(item) for item in value)
    if isinstance(value, Mapping):
        return any(_dirty(item) for item in value.values())
    if isinstance(value, Sequence):
        return any(_dirty(item) for item in value)
    return False


def _dirty_attributes(attributes: Mapping[str, Any] | None) -> bool:
    """`_dirty` of any value, with the usual types (text, numbers) checked inline:
    every ended span passes here."""
    if not attributes:
        return False
    for value in attributes.values():
        kind = type(value)
        if kind is str:
            if len(value) >= _PAN_MIN_DIGITS and has_card_number(value):
                return True
        elif kind is int:
            if abs(value) >= _PAN_MIN_INT and has_card_number(str(value)):
                return True
        elif kind is bool or kind is float or value is None:
            continue
        elif _dirty(value):
            return True
    return False


def needs_redaction(span: ReadableSpan) -> bool:
    """Whether any text of `span` holds a card-shaped digit run (most spans: none)."""
    return (
        _dirty_text(span.name)
        or _dirty_text(span.status.description or "")
        or _dirty_attributes(span.attributes)
        or any(_dirty_text(e.name) or _dirty_attributes(e.attributes) for e in span.events)
        or any(_dirty_attributes(link.attributes) for link in span.links)
    )


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
            Event(redact(event.name), _clean_attributes(event.attributes), event.timestamp)
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
    """Hands `inner` every ended span card-number-free: as it is when nothing in it is
    card-shaped (a search, no copy), else a masked copy."""

    def __init__(self, inner: SpanProcessor) -> None:
        self._inner = inner

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self._inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self._inner.on_end(redacted_span(span) if needs_redaction(span) else span)

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)
