"""W3C trace context inside our own messages, and the span of an order's step.

A clock message or a queue record carries work for one order, and a batch carries
many orders, so gRPC metadata cannot say which trace each belongs to. Each such
message has a plain string field holding its order's context: the W3C `traceparent`
value, then, if there is one, a newline and the `tracestate` value (neither may
contain a newline). An empty field means "no trace": that is what `inject` returns
when tracing is off, and what `extract` treats as no parent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    TraceFlags,
    Tracer,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from bookstore.telemetry import tracing

# The order id is on every span of a checkout, under this attribute.
ORDER_ID = "bookstore.order_id"
# The vector clock [TV, FD, SUG] after a checkout event, as a list of ints.
VECTOR_CLOCK = "bookstore.vector_clock"

_W3C = TraceContextTextMapPropagator()
_VERSION_00 = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def inject(context: Context | None = None) -> str:
    """The trace context of `context` (default: the current one) as one string field."""
    span_context = trace.get_current_span(context).get_span_context()
    if not span_context.is_valid:
        return ""
    parent = tracing.traceparent(span_context)
    state = span_context.trace_state.to_header() if span_context.trace_state else ""
    return f"{parent}\n{state}" if state else parent


def extract(field: str) -> Context | None:
    """The context carried by a string field from `inject`; None for an empty one.

    Our own fields are checked against the W3C version-00 form and read directly (every
    event's span does this); anything else goes through the W3C propagator, which
    knows the other versions and what makes a value invalid.
    """
    if not field:
        return None
    parent, _, state = field.partition("\n")
    if not state and (match := _VERSION_00.fullmatch(parent)):
        trace_id, span_id = int(match[1], 16), int(match[2], 16)
        if trace_id and span_id:
            span_context = SpanContext(
                trace_id, span_id, is_remote=True, trace_flags=TraceFlags(int(match[3], 16))
            )
            return trace.set_span_in_context(NonRecordingSpan(span_context))
    carrier = {"traceparent": parent}
    if state:
        carrier["tracestate"] = state
    return _W3C.extract(carrier)


def order_step(
    tracer: Tracer, name: str, order_id: str, **options: Any
) -> AbstractContextManager[Span]:
    """`order_span` when this process traces; otherwise nothing is started at all (the
    API's invalid span stands in), so a step costs nothing with tracing off."""
    if not tracing.enabled():
        return nullcontext(trace.INVALID_SPAN)
    return order_span(tracer, name, order_id, **options)


def tracer(name: str) -> Tracer:
    """A tracer of the installed provider (the API's no-op one when tracing is off)."""
    return trace.get_tracer(name)


@contextmanager
def order_span(
    tracer: Tracer,
    name: str,
    order_id: str,
    parent: str = "",
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, AttributeValue] | None = None,
    links: Sequence[Link] | None = None,
) -> Iterator[Span]:
    """A current span for one step of order `order_id`, with the order id attribute.

    `parent` is a field from `inject` (a clock message's or a queue record's); empty:
    the span's parent is the current span, if any. `links`: its other parents.
    """
    with tracer.start_as_current_span(
        name,
        context=extract(parent),
        kind=kind,
        attributes={ORDER_ID: order_id, **(attributes or {})},
        links=links,
    ) as span:
        yield span
