"""The maintained FastAPI and gRPC instrumentations work with our fastapi and grpcio:
a W3C traceparent over HTTP and over gRPC metadata continues the caller's trace."""

from __future__ import annotations

import grpc
from fastapi import FastAPI
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.testclient import TestClient

from bookstore.telemetry.propagation import inject, order_span

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def test_fastapi_requests_continue_the_callers_trace(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = traced
    app = FastAPI()

    @app.get("/orders/{order_id}")
    async def order(order_id: str) -> dict[str, str]:
        return {"orderId": order_id}

    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)
    try:
        with TestClient(app) as client:
            answer = client.get("/orders/o-1", headers={"traceparent": PARENT})
        assert answer.json() == {"orderId": "o-1"}
    finally:
        FastAPIInstrumentor.uninstrument_app(app)
    (server,) = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert server.name == "GET /orders/{order_id}"
    assert server.context is not None and server.parent is not None
    assert f"{server.context.trace_id:032x}" == TRACE_ID
    assert f"{server.parent.span_id:016x}" == "00f067aa0ba902b7"


async def test_grpc_calls_carry_the_trace_in_metadata(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = traced
    server = grpc.aio.server(interceptors=[aio_server_interceptor(tracer_provider=provider)])
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{port}",
            interceptors=aio_client_interceptors(tracer_provider=provider),
        )
        async with channel:
            stub = health_pb2_grpc.HealthStub(channel)
            with order_span(provider.get_tracer("test"), "checkout", "o-2") as root:
                assert inject()  # tracing is on for this provider
                await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
    finally:
        await server.stop(None)
    spans = {s.kind: s for s in exporter.get_finished_spans()}
    client, served = spans[SpanKind.CLIENT], spans[SpanKind.SERVER]
    assert served.name == "/grpc.health.v1.Health/Check"
    assert client.context is not None and served.context is not None
    assert served.parent is not None and client.parent is not None
    assert client.context.trace_id == served.context.trace_id == root.get_span_context().trace_id
    assert client.parent.span_id == root.get_span_context().span_id
    assert served.parent.span_id == client.context.span_id
