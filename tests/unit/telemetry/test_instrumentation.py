"""The maintained FastAPI and gRPC (server) instrumentations work with our fastapi and
grpcio: a W3C traceparent over HTTP and over gRPC metadata continues the caller's trace,
and a batch call's server span starts a trace of its own linked to its callers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import grpc
import pytest
from fastapi import FastAPI
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.grpc import aio_server_interceptor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.testclient import TestClient

from bookstore.telemetry import tracing
from bookstore.telemetry.propagation import order_span

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


async def _health_check(
    provider: TracerProvider, call: Callable[[health_pb2_grpc.HealthStub], Awaitable[object]]
) -> None:
    """`call` against a health server set up as ours are with tracing on: the gRPC
    server instrumentation (with our filter) outermost, then the batch-links one."""
    server = grpc.aio.server(
        interceptors=[
            aio_server_interceptor(tracer_provider=provider, filter_=tracing._continues_a_trace),
            *tracing.server_interceptors(),
        ]
    )
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await call(health_pb2_grpc.HealthStub(channel))
    finally:
        await server.stop(None)


async def test_a_grpc_call_continues_the_callers_trace(
    traced: tuple[TracerProvider, InMemorySpanExporter], monkeypatch: pytest.MonkeyPatch
) -> None:
    provider, exporter = traced
    monkeypatch.setattr(tracing, "_enabled", True)
    request = health_pb2.HealthCheckRequest()

    async def call(stub: health_pb2_grpc.HealthStub) -> None:
        await stub.Check(request, timeout=5)  # no context: the server starts no trace
        with order_span(provider.get_tracer("test"), "checkout", "o-2"):
            await stub.Check(request, timeout=5, metadata=tracing.call_metadata())

    await _health_check(provider, call)
    (root, served) = sorted(
        exporter.get_finished_spans(), key=lambda s: s.kind != SpanKind.INTERNAL
    )
    assert served.kind == SpanKind.SERVER and served.name == "/grpc.health.v1.Health/Check"
    assert root.context is not None and served.context is not None and served.parent is not None
    assert served.context.trace_id == root.context.trace_id
    assert served.parent.span_id == root.context.span_id


async def test_a_batch_call_is_a_trace_of_its_own_linked_to_its_callers(
    traced: tuple[TracerProvider, InMemorySpanExporter], monkeypatch: pytest.MonkeyPatch
) -> None:
    provider, exporter = traced
    monkeypatch.setattr(tracing, "_enabled", True)
    tracer = provider.get_tracer("test")
    callers = []
    for order in ("o-1", "o-2"):
        with order_span(tracer, "two-phase commit", order):
            callers.append(tracing.caller_context())

    async def call(stub: health_pb2_grpc.HealthStub) -> None:
        tracing.carry_batch([*callers, ""], 3)  # two traced callers, one not
        await stub.Check(
            health_pb2.HealthCheckRequest(), timeout=5, metadata=tracing.call_metadata()
        )

    # In a task of its own, as a batch is: what carry_batch sets stays in it.
    await asyncio.create_task(_health_check(provider, call))
    served = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert len(served) == 1 and served[0].parent is None  # the root of its own trace
    linked = {f"{link.context.span_id:016x}" for link in served[0].links}
    assert linked == {caller.split("-")[2] for caller in callers}
    assert (served[0].attributes or {})["bookstore.batch_size"] == 3
