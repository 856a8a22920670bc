"""OpenTelemetry tracing: set up once per process, or not at all.

`setup_tracing` installs the SDK only when an OTLP endpoint is configured
(`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`); otherwise it
installs nothing and does not even import the SDK, and every span the code starts is
the API's no-op span, so tracing off costs a function call.

The exporter speaks the protocol `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` (or else
`OTEL_EXPORTER_OTLP_PROTOCOL`) names: `grpc` (port 4317) or `http/protobuf` (port 4318;
`OTEL_EXPORTER_OTLP_ENDPOINT` then gets `/v1/traces` appended, a traces endpoint is used
as it is). Unset, it is `grpc`, as it always was here, so existing deployments keep
working; the OpenTelemetry specification's default is `http/protobuf`. The SDK and the
exporter read every other standard variable themselves: `OTEL_TRACES_SAMPLER` / `_ARG` (unset:
10% of the checkouts, `trace_sampling`),
`OTEL_EXPORTER_OTLP_HEADERS`, `_TIMEOUT`, `_INSECURE` (gRPC), `_COMPRESSION`,
`_CERTIFICATE`, `OTEL_BSP_*`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_SDK_DISABLED`. Every
exported span passes `sdk.RedactingSpanProcessor` (no card number).
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import grpc
from opentelemetry import trace

from bookstore.settings import SettingsError
from bookstore.telemetry.unary import Behavior, UnaryInterceptor

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

# Long-lived streams (the choreography's sessions and exchanges, the execution feed,
# health watches) carry many orders: a span for one of them would last for hours and
# join no checkout's trace, so the gRPC instrumentation leaves them out.
_STREAMS = ("Session", "Exchange", "WatchExecutions", "Watch")

_enabled = False

# A batch call's metadata: the span contexts (W3C traceparent values, space-separated)
# of the callers whose requests it carries, and how many requests it carries.
BATCH_CALLERS = "bookstore-batch-callers"
BATCH_SIZE = "bookstore-batch-size"
# At most this many callers are linked (the SDK keeps 128 links; metadata stays small).
MAX_LINKED_CALLERS = 64
_batch: contextvars.ContextVar[tuple[tuple[str, str], ...] | None] = contextvars.ContextVar(
    "bookstore_batch", default=None
)

_TRACED_BY = ("traceparent", BATCH_CALLERS)

# Each pair: the per-signal variable first, it takes precedence (as in the specification).
_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_PROTOCOL_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")

GRPC = "grpc"
HTTP_PROTOBUF = "http/protobuf"
PROTOCOLS = (GRPC, HTTP_PROTOBUF)  # the specification's third, http/json, has no Python exporter


def tracing_endpoint(env: Mapping[str, str] | None = None) -> str:
    """The OTLP endpoint spans go to; empty when tracing is off.

    With an endpoint set, raises SettingsError, naming the variable and the accepted
    values, for a protocol this process cannot export with (`tracing_protocol`).
    """
    e = os.environ if env is None else env
    if e.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ""
    endpoint = next((e[name] for name in _ENDPOINT_VARIABLES if e.get(name)), "")
    if endpoint:
        tracing_protocol(e)
    return endpoint


def tracing_protocol(env: Mapping[str, str] | None = None) -> str:
    """The OTLP protocol spans go over: `grpc` or `http/protobuf`, from
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL, else `grpc`.

    Raises SettingsError, naming the variable and the accepted values, for any other.
    """
    e = os.environ if env is None else env
    for name in _PROTOCOL_VARIABLES:
        protocol = e.get(name, "").strip()
        if not protocol:
            continue
        if protocol not in PROTOCOLS:
            accepted = " or ".join(repr(p) for p in PROTOCOLS)
            raise SettingsError(f"{name}={protocol!r}: expected {accepted}")
        return protocol
    return GRPC


def span_exporter(protocol: str) -> SpanExporter:
    """The standard OTLP exporter for `protocol` (one of PROTOCOLS); it reads its
    endpoint, headers, timeout and TLS files from the OTEL_EXPORTER_OTLP_* variables."""
    # Imported here: with tracing off, no exporter is loaded; with it on, only one.
    if protocol == HTTP_PROTOBUF:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )

        return HttpExporter()
    if protocol == GRPC:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter()
    raise ValueError(f"no OTLP exporter for protocol {protocol!r}; expected one of {PROTOCOLS}")


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
    from bookstore.telemetry.sdk import make_tracer_provider

    global _enabled
    exporter = span_exporter(tracing_protocol())
    provider = make_tracer_provider(service_name, exporter, replica_id)
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
    """A server span only for a unary call that carries a trace context (traceparent)
    or is a batch of traced callers (its span then starts the batch's own trace)."""
    metadata = details.invocation_metadata or ()
    return any(item[0] in _TRACED_BY for item in metadata) and (_method_of(details) not in _STREAMS)


def traceparent(context: trace.SpanContext) -> str:
    """`context` as a W3C traceparent value (version 00)."""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def caller_context() -> str:
    """The current span's context as a W3C traceparent value; "" when there is none
    (or this process does not trace)."""
    if not _enabled:
        return ""
    context = trace.get_current_span().get_span_context()
    return traceparent(context) if context.is_valid else ""


def _sampled(caller: str) -> bool:
    """Whether a traceparent value (`caller_context`) says its span is sampled."""
    flags = caller[-2:]
    return (
        len(caller) == 55
        and all(c in "0123456789abcdef" for c in flags)
        and bool(int(flags, 16) & 1)
    )


def carry_batch(callers: Sequence[str], size: int) -> None:
    """Make the calls of the current task (a batch's own, `batching.Coalescer`) carry
    `callers`' contexts (from `caller_context`; "" skipped) and the batch's size."""
    linked = " ".join([caller for caller in callers if _sampled(caller)][:MAX_LINKED_CALLERS])
    # A batch of untraced (or unsampled) callers carries nothing: its server starts no trace.
    _batch.set(((BATCH_CALLERS, linked), (BATCH_SIZE, str(size))) if linked else None)


def call_metadata() -> tuple[tuple[str, str], ...] | None:
    """The metadata that puts a gRPC call in a trace; None when this process does not
    trace. A batch's call (`carry_batch`) carries its callers' contexts: the server's
    span is the root of the batch's own trace, linked to each. Any other call carries
    the current span's context (W3C `traceparent`): the server's span continues it.
    """
    if not _enabled:
        return None
    batch = _batch.get()
    if batch is not None:
        return batch
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    state = context.trace_state.to_header() if context.trace_state else ""
    return (("traceparent", traceparent(context)),) + ((("tracestate", state),) if state else ())


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """With tracing on, the interceptor that links a batch call's server span to the
    spans of the callers it carries; none with tracing off."""
    return [_BatchLinks()] if _enabled else []


class _BatchLinks(UnaryInterceptor):
    """Links the span the instrumentation started for a batch call (the outer
    interceptor: its span is current in the handler) to every caller the call names."""

    def wrap(self, behavior: Behavior, details: grpc.HandlerCallDetails) -> Behavior | None:
        metadata = dict(details.invocation_metadata or ())
        callers = metadata.get(BATCH_CALLERS)
        if callers is None:
            return None
        size = metadata.get(BATCH_SIZE, "")

        async def linked(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            span = trace.get_current_span()
            if span.is_recording():  # (a sampler may have said no: then nothing to link)
                for caller in callers.split()[:MAX_LINKED_CALLERS]:
                    if (caller_context := _span_context(caller)) is not None:
                        span.add_link(caller_context)
                if size.isdigit():
                    span.set_attribute("bookstore.batch_size", int(size))
            return await behavior(request, context)

        return linked


def _span_context(traceparent: str) -> trace.SpanContext | None:
    from bookstore.telemetry.propagation import extract  # (it imports this module)

    span_context = trace.get_current_span(extract(traceparent)).get_span_context()
    return span_context if span_context.is_valid else None


def _instrument_grpc() -> None:
    """gRPC server spans for unary calls that continue a trace (W3C context in the
    metadata, which `call_metadata` puts there).

    A gRPC span only ever continues a trace, never starts one: the background calls
    (Bully pings, the books database's replication and heartbeats, the leader's
    dequeue polls, health checks) belong to no checkout, and as roots of their own
    they were most of what a process exported. The filter is a plain function: the
    instrumentation's own filter helpers cost a tenth of a busy process's CPU.

    There is no client instrumentation: its interceptor puts every call and stream of
    every channel on grpc.aio's slower intercepted path, traced or not (Bully pings,
    replication, the choreography's streams), which cost a busy process more than its
    spans did; and the calls it would trace are the batches, which belong to no single
    trace: one span per batch, the server's, links them all (`call_metadata`).
    """
    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorServer

    GrpcAioInstrumentorServer(filter_=_continues_a_trace).instrument()  # type: ignore[no-untyped-call]


def instrument_app(app: FastAPI) -> None:
    """Server spans for every HTTP request of a FastAPI app, when tracing is on."""
    if not _enabled:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app, excluded_urls="metrics,healthz,api/charts", exclude_spans=["receive", "send"]
    )
