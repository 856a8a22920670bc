"""Test OTLP trace receivers on 127.0.0.1 (a free port): `OtlpReceiver` speaks OTLP
over gRPC (a TraceService), `OtlpHttpReceiver` OTLP over HTTP with protobuf bodies
(POST /v1/traces, the standard library's HTTP server).

Each decodes every export with the `opentelemetry-proto` package and keeps the spans,
each with the `service.name` of the resource that sent it:

    with OtlpReceiver() as receiver:   # or OtlpHttpReceiver()
        ... export to receiver.endpoint ("http://127.0.0.1:PORT") ...
        receiver.spans()         # every span received, in arrival order
"""

from __future__ import annotations

import gzip
import http.server
import threading
import zlib
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


class _Spans:
    """The spans of every export request received, in arrival order (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []

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


class OtlpReceiver(_Spans):
    """OTLP over gRPC."""

    def __init__(self) -> None:
        super().__init__()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self), self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"http://127.0.0.1:{self.port}"

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


TRACES_PATH = "/v1/traces"  # the OTLP/HTTP path of trace exports
_PROTOBUF = "application/x-protobuf"
_DECODERS = {"": lambda body: body, "gzip": gzip.decompress, "deflate": zlib.decompress}


class OtlpHttpReceiver(_Spans):
    """OTLP over HTTP, binary protobuf: POST /v1/traces. Anything else is answered
    with the status an OTLP/HTTP server gives it (404, 405, 415) and kept in `refused`
    as "METHOD PATH: why"."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: list[str] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if self.path != TRACES_PATH:
                    self._refuse(404, "not the traces path")
                elif self.headers.get("Content-Type") != _PROTOBUF or encoding not in _DECODERS:
                    self._refuse(415, f"{self.headers.get('Content-Type')} {encoding}".strip())
                else:
                    request = trace_service_pb2.ExportTraceServiceRequest()
                    request.ParseFromString(_DECODERS[encoding](body))
                    receiver._add(request)
                    self._answer(200, trace_service_pb2.ExportTraceServiceResponse())

            def do_GET(self) -> None:
                self._refuse(405, "not POST")

            def _refuse(self, status: int, why: str) -> None:
                with receiver._lock:
                    receiver.refused.append(f"{self.command} {self.path}: {why}")
                self._answer(status, None)

            def _answer(
                self, status: int, message: trace_service_pb2.ExportTraceServiceResponse | None
            ) -> None:
                body = message.SerializeToString() if message is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", _PROTOBUF)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # the test's output is the spans, not an access log

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> OtlpHttpReceiver:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
