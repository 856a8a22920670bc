"""Spans exported over OTLP (gRPC, and HTTP with protobuf) to a test receiver on 127.0.0.1."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator

import pytest
from fakes.otlp import TRACES_PATH, OtlpHttpReceiver, OtlpReceiver
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.trace import SpanKind
from telemetry_support import run_python

from bookstore.telemetry.propagation import ORDER_ID, inject, order_span
from bookstore.telemetry.sdk import make_tracer_provider

CARD = "4111111111111111"
ORDER = "3b09277b-4612-4251-a283-678901234567"


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture
def http_receiver() -> Iterator[OtlpHttpReceiver]:
    with OtlpHttpReceiver() as receiver:
        yield receiver


def test_context_in_a_message_field_joins_two_services_in_one_trace(
    receiver: OtlpReceiver,
) -> None:
    # Two "services", each with its own provider and resource, exporting to the receiver.
    providers = {
        name: make_tracer_provider(name, OTLPSpanExporter(endpoint=receiver.endpoint))
        for name in ("orchestrator", "transaction-verification")
    }
    orchestrator = providers["orchestrator"].get_tracer("test")
    verification = providers["transaction-verification"].get_tracer("test")

    with order_span(orchestrator, "POST /checkout", ORDER, kind=SpanKind.SERVER):
        message_field = inject()  # what InitOrder would carry
    # The other service knows nothing but the field (no current span of its own).
    with order_span(
        verification, "event a", ORDER, parent=message_field, attributes={"card": CARD}
    ):
        clock_field = inject()  # what its ClockUpdate would carry
    with order_span(verification, "event c", ORDER, parent=clock_field):
        pass
    for provider in providers.values():
        assert provider.force_flush()
        provider.shutdown()

    spans = {span.name: span for span in receiver.spans()}
    assert set(spans) == {"POST /checkout", "event a", "event c"}
    root, a, c = spans["POST /checkout"], spans["event a"], spans["event c"]
    assert root.service == "orchestrator"
    assert a.service == c.service == "transaction-verification"
    assert root.trace_id == a.trace_id == c.trace_id
    assert root.parent_span_id == ""
    assert a.parent_span_id == root.span_id
    assert c.parent_span_id == a.span_id
    assert all(span.attributes[ORDER_ID] == ORDER for span in spans.values())
    assert a.attributes["card"] == "****1111"
    assert not any("11111111" in text for span in spans.values() for text in span.texts())


_SERVICE = textwrap.dedent(
    """
    from bookstore.telemetry.propagation import order_span, tracer
    from bookstore.telemetry.tracing import setup_tracing

    assert setup_tracing("fraud-detection", replica_id=None) is not None
    with order_span(tracer("bookstore.fraud_detection"), "event d", "order-9") as span:
        span.set_attribute("note", "card 4111-1111-1111-1111 looked fine")
    """
)


def _run_service(endpoint: str, **env: str) -> None:
    """A process that sets tracing up from its environment and ends one span.

    The SDK flushes and shuts down at exit: the receiver has every span afterwards.
    """
    run_python(_SERVICE, OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, **env)


def _the_span_of_the_service(receiver: OtlpHttpReceiver | OtlpReceiver) -> None:
    (span,) = receiver.spans()
    assert (span.service, span.name) == ("fraud-detection", "event d")
    assert span.attributes[ORDER_ID] == "order-9"
    assert span.attributes["note"] == "card ****1111 looked fine"


def test_setup_tracing_exports_to_the_configured_endpoint(receiver: OtlpReceiver) -> None:
    _run_service(receiver.endpoint)  # no protocol named: gRPC
    _the_span_of_the_service(receiver)


def test_setup_tracing_honours_the_standard_sampler_variable(receiver: OtlpReceiver) -> None:
    _run_service(receiver.endpoint, OTEL_TRACES_SAMPLER="always_off")
    assert receiver.spans() == []


def test_http_protobuf_delivers_spans_over_http(http_receiver: OtlpHttpReceiver) -> None:
    # The base endpoint: the exporter appends /v1/traces, as the specification says.
    _run_service(http_receiver.endpoint, OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf")
    _the_span_of_the_service(http_receiver)
    assert http_receiver.refused == []


def test_the_traces_protocol_and_endpoint_take_precedence(
    http_receiver: OtlpHttpReceiver,
) -> None:
    run_python(
        _SERVICE,
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",  # nothing there
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        # A traces endpoint is the whole URL, used as it is.
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http_receiver.endpoint + TRACES_PATH,
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="http/protobuf",
    )
    _the_span_of_the_service(http_receiver)
