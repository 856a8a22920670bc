"""A test OTLP trace receiver: a gRPC TraceService on 127.0.0.1 (a free port).

It decodes every export with the `opentelemetry-proto` package and keeps the spans,
each with the `service.name` of the resource that sent it:

    with OtlpReceiver() as receiver:
        ... export to receiver.endpoint ("http://127.0.0.1:PORT") ...
        receiver.spans()         # every span received, in arrival order
"""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span


def any_value(value: AnyValue) -> Any:
    """An OTLP attribute value as a Python value."""
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [any_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    return None if kind is None else getattr(value, kind)


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    span: Span

    @property
    def name(self) -> str:
        return str(self.span.name)

    @property
    def trace_id(self) -> str:
        return bytes(self.span.trace_id).hex()

    @property
    def span_id(self) -> str:
        return bytes(self.span.span_id).hex()

    @property
    def parent_span_id(self) -> str:
        return bytes(self.span.parent_span_id).hex()

    @property
    def attributes(self) -> dict[str, Any]:
        return {kv.key: any_value(kv.value) for kv in self.span.attributes}

    def texts(self) -> list[str]:
        """Every piece of text the span carries: name, attributes, events, status."""
        out = [self.name, self.span.status.message]
        out += [f"{k}={v}" for k, v in self.attributes.items()]
        for event in self.span.events:
            out.append(event.name)
            out += [f"{kv.key}={any_value(kv.value)}" for kv in event.attributes]
        return out


def timeline(spans: list[ReceivedSpan], width: int = 40) -> str:
    """One trace's spans as a text timeline, by start time: offset, duration, a bar on a
    common scale, the service and the span's name (with its vector clock, if any)."""
    if not spans:
        return "(no spans)"
    ordered = sorted(spans, key=lambda s: s.span.start_time_unix_nano)
    t0 = ordered[0].span.start_time_unix_nano
    t1 = max(s.span.end_time_unix_nano for s in ordered)
    scale = width / max(1, t1 - t0)
    lines = []
    for span in ordered:
        start, end = span.span.start_time_unix_nano - t0, span.span.end_time_unix_nano - t0
        left = int(start * scale)
        bar = " " * left + "█" * max(1, int(end * scale) - left)
        clock = span.attributes.get("bookstore.vector_clock")
        name = span.name + (f" {clock}" if clock else "")
        lines.append(
            f"{start / 1e6:8.2f} ms {(end - start) / 1e6:7.2f} ms |{bar:<{width}}| "
            f"{span.service:<24} {name}"
        )
    return "\n".join(lines)


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self._receiver._add(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class OtlpReceiver:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self), self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def _add(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        received = []
        for resource_spans in request.resource_spans:
            names = [
                kv.value.string_value
                for kv in resource_spans.resource.attributes
                if kv.key == "service.name"
            ]
            service = names[0] if names else ""
            for scope_spans in resource_spans.scope_spans:
                received += [ReceivedSpan(service, span) for span in scope_spans.spans]
        with self._lock:
            self._spans += received

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def __enter__(self) -> OtlpReceiver:
        self._server.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.stop(grace=None)
