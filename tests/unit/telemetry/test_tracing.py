"""Tracing set-up: off without an endpoint, and no card number in any exported span."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from telemetry_support import run_python

from bookstore.settings import SettingsError
from bookstore.telemetry import sdk
from bookstore.telemetry.propagation import inject, order_span
from bookstore.telemetry.sdk import make_tracer_provider
from bookstore.telemetry.tracing import (
    setup_tracing,
    span_exporter,
    tracing_endpoint,
    tracing_protocol,
)

CARD = "4111111111111111"


@pytest.fixture
def no_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


def test_without_an_endpoint_setup_installs_nothing(no_otel_env: None) -> None:
    assert setup_tracing("fraud-detection") is None
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    with order_span(trace.get_tracer("t"), "event d", "order-1") as span:
        assert not span.is_recording()
        assert inject() == ""


_TRACING_OFF = """
import sys
from bookstore.telemetry.propagation import inject, order_span, tracer
from bookstore.telemetry.tracing import setup_tracing
assert setup_tracing("suggestions") is None
with order_span(tracer("t"), "event f", "order-1"):
    assert inject() == ""
assert not [m for m in sys.modules if m.startswith("opentelemetry.sdk")], "SDK loaded"
"""


def test_without_an_endpoint_the_sdk_is_never_even_imported() -> None:
    run_python(_TRACING_OFF)


@pytest.mark.parametrize(
    ("env", "endpoint"),
    [
        ({}, ""),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, ""),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4317"}, "http://jaeger:4317"),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4317",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:4317",
            },
            "http://b:4317",
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4317", "OTEL_SDK_DISABLED": "true"}, ""),
    ],
)
def test_the_endpoint_comes_from_the_standard_variables(env: dict[str, str], endpoint: str) -> None:
    assert tracing_endpoint(env) == endpoint


@pytest.mark.parametrize(
    ("env", "protocol"),
    [
        ({}, "grpc"),  # unset: gRPC, as before (the specification's default is http/protobuf)
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": ""}, "grpc"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "grpc"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, "http/protobuf"),
        ({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": " http/protobuf "}, "http/protobuf"),
        (
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            },
            "http/protobuf",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
            },
            "grpc",
        ),
        (  # the per-signal variable decides: the general one is not read at all
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            },
            "http/protobuf",
        ),
    ],
)
def test_the_protocol_comes_from_the_standard_variables(env: dict[str, str], protocol: str) -> None:
    assert tracing_protocol(env) == protocol


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),  # no Python exporter speaks it
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "GRPC"),
    ],
)
def test_any_other_protocol_is_a_configuration_error_naming_the_accepted_ones(
    variable: str, value: str
) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", variable: value}
    expected = f"{variable}='{value}': expected 'grpc' or 'http/protobuf'"
    with pytest.raises(SettingsError) as raised:
        tracing_endpoint(env)
    assert str(raised.value) == expected


def test_the_protocol_is_not_read_with_tracing_off() -> None:
    assert tracing_endpoint({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}) == ""


def test_each_protocol_gets_the_standard_exporter_for_it() -> None:
    from opentelemetry.exporter.otlp.proto.grpc import trace_exporter as grpc_exporter
    from opentelemetry.exporter.otlp.proto.http import trace_exporter as http_exporter

    http = span_exporter("http/protobuf")
    assert isinstance(http, http_exporter.OTLPSpanExporter)
    grpc = span_exporter("grpc")
    assert isinstance(grpc, grpc_exporter.OTLPSpanExporter)
    for exporter in (http, grpc):
        exporter.shutdown()
    with pytest.raises(ValueError, match="http/json"):
        span_exporter("http/json")


def test_card_numbers_are_masked_everywhere_in_a_span() -> None:
    exporter = InMemorySpanExporter()
    provider = make_tracer_provider("transaction-verification", exporter, replica_id=None)
    tracer = provider.get_tracer("test")
    with order_span(tracer, f"check {CARD}", "order-1", attributes={"card": CARD}) as span:
        span.set_attribute("spaced", "4111 1111 1111 1111")
        span.set_attribute("as_int", int(CARD))
        span.set_attribute("list", ["x", CARD])
        span.add_event("typed", {"note": f"number {CARD}"})
        span.record_exception(ValueError(f"bad card {CARD}"))
        span.set_status(trace.Status(trace.StatusCode.ERROR, f"declined {CARD}"))
    provider.force_flush()
    (exported,) = exporter.get_finished_spans()
    text = repr(
        (
            exported.name,
            dict(exported.attributes or {}),
            [(e.name, dict(e.attributes or {})) for e in exported.events],
            exported.status.description,
        )
    )
    assert "11111111" not in text
    assert (exported.attributes or {})["card"] == "****1111"
    assert (exported.attributes or {})["as_int"] == "****1111"
    assert (exported.attributes or {})["bookstore.order_id"] == "order-1"
    provider.shutdown()


def test_numbers_that_are_not_card_shaped_are_kept() -> None:
    exporter = InMemorySpanExporter()
    provider = make_tracer_provider("order-executor", exporter, replica_id=3)
    with order_span(provider.get_tracer("test"), "execute", "order-2") as span:
        span.set_attribute("bookstore.vector_clock", [3, 2, 1])
        span.set_attribute("sequence", 12345)
    provider.force_flush()
    (exported,) = exporter.get_finished_spans()
    assert exported.attributes is not None
    assert list(exported.attributes["bookstore.vector_clock"]) == [3, 2, 1]  # type: ignore[arg-type]
    assert exported.attributes["sequence"] == 12345
    assert exported.resource.attributes["service.instance.id"] == "order-executor-3"
    provider.shutdown()


PLACES = ("name", "attribute", "nested", "event name", "event attribute", "status", "link")


@pytest.mark.parametrize("place", PLACES)
def test_a_card_number_in_any_one_place_is_found_and_masked(place: str) -> None:
    exporter = InMemorySpanExporter()
    provider = make_tracer_provider("payment", exporter, replica_id=None)
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("other") as other:
        linked = other.get_span_context()
    name = f"check {CARD}" if place == "name" else "check"
    links = [trace.Link(linked, {"note": CARD if place == "link" else "none"})]
    with tracer.start_as_current_span(name, links=links) as span:
        span.set_attribute("plain", CARD if place == "attribute" else "1234")
        span.set_attribute("list", ["x", CARD if place == "nested" else "y"])
        span.add_event(f"seen {CARD}" if place == "event name" else "seen")
        span.add_event("typed", {"note": CARD if place == "event attribute" else "z"})
        span.set_status(trace.Status(trace.StatusCode.ERROR, CARD if place == "status" else "no"))
    provider.force_flush()
    exported = next(s for s in exporter.get_finished_spans() if s.name.startswith("check"))
    text = repr(
        (
            exported.name,
            dict(exported.attributes or {}),
            [(e.name, dict(e.attributes or {})) for e in exported.events],
            [dict(link.attributes or {}) for link in exported.links],
            exported.status.description,
        )
    )
    assert CARD not in text and "****1111" in text
    provider.shutdown()


def test_a_span_without_a_card_number_is_passed_on_as_it_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    copies: list[str] = []
    copy = sdk.redacted_span
    monkeypatch.setattr(sdk, "redacted_span", lambda span: copies.append(span.name) or copy(span))
    exporter = InMemorySpanExporter()
    provider = make_tracer_provider("payment", exporter, replica_id=None)
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("plain") as span:
        span.set_attribute("order", "b1e0c7d2-5a3c-4f19-9a51-2f0d6c1e8a77")
        span.set_attribute("clock", [3, 2, 1])
    with tracer.start_as_current_span(f"card {CARD}"):
        pass
    provider.force_flush()
    assert [s.name for s in exporter.get_finished_spans()] == ["plain", "card ****1111"]
    assert copies == [f"card {CARD}"]  # only the span holding a card number was copied
    provider.shutdown()
