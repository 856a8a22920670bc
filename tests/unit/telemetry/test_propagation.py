"""Trace context in a plain string field, and the order span helper."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from bookstore.telemetry.propagation import ORDER_ID, extract, inject, order_span

_W3C = TraceContextTextMapPropagator()


def _context(state: TraceState) -> Context:
    span_context = SpanContext(
        trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
        span_id=0x00F067AA0BA902B7,
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=state,
    )
    return trace.set_span_in_context(NonRecordingSpan(span_context))


def test_a_field_is_the_w3c_traceparent() -> None:
    field = inject(_context(TraceState()))
    assert field == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_the_trace_state_travels_after_a_newline() -> None:
    field = inject(_context(TraceState([("vendor", "v1")])))
    assert field.endswith("\nvendor=v1")
    parent = trace.get_current_span(extract(field)).get_span_context()
    assert parent.trace_id == 0x4BF92F3577B34DA6A3CE929D0E0E4736
    assert parent.span_id == 0x00F067AA0BA902B7
    assert parent.is_remote
    assert parent.trace_state.get("vendor") == "v1"


def test_an_empty_field_is_no_parent() -> None:
    assert extract("") is None
    assert inject() == ""  # no current span


def test_a_malformed_field_gives_no_valid_parent() -> None:
    context = extract("not a traceparent")
    assert not trace.get_current_span(context).get_span_context().is_valid


def test_an_order_span_continues_the_trace_of_its_message(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = traced
    tracer = provider.get_tracer("test")
    with order_span(tracer, "checkout", "order-7") as root:
        field = inject()
    with order_span(tracer, "event a", "order-7", parent=field, attributes={"x": 1}):
        pass
    child, parent = exporter.get_finished_spans()[::-1]
    assert parent.name == "checkout" and child.name == "event a"
    assert child.context is not None and child.parent is not None
    assert child.context.trace_id == root.get_span_context().trace_id
    assert child.parent.span_id == root.get_span_context().span_id
    assert dict(child.attributes or {}) == {ORDER_ID: "order-7", "x": 1}


def test_without_a_field_the_current_span_is_the_parent(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = traced
    tracer = provider.get_tracer("test")
    with order_span(tracer, "outer", "o"), order_span(tracer, "inner", "o"):
        pass
    inner, outer = exporter.get_finished_spans()
    assert inner.parent is not None and outer.context is not None
    assert inner.parent.span_id == outer.context.span_id


@given(
    st.one_of(
        st.tuples(
            st.sampled_from(["00", "01", "ff", "0"]),
            st.text("0123456789abcdefABCDEF", min_size=31, max_size=33),
            st.text("0123456789abcdef", min_size=15, max_size=17),
            st.sampled_from(["00", "01", "ff", "0g"]),
        ).map("-".join),
        st.text(max_size=60),
    )
)
def test_a_field_reads_as_the_w3c_propagator_reads_it(field: str) -> None:
    """Our fast reading of a version-00 value agrees with the W3C propagator on every
    value, valid or not."""
    ours = trace.get_current_span(extract(field) or Context()).get_span_context()
    carrier = {"traceparent": field.partition("\n")[0]}
    theirs = trace.get_current_span(_W3C.extract(carrier)).get_span_context()
    assert (ours.is_valid, ours.trace_id, ours.span_id, ours.trace_flags) == (
        theirs.is_valid,
        theirs.trace_id,
        theirs.span_id,
        theirs.trace_flags,
    )
