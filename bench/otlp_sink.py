"""A tiny OTLP trace sink for the overhead benchmark: accepts every export, keeps nothing.

    .venv/bin/python bench/otlp_sink.py --port 4317

It answers `TraceService/Export` without decoding the request (the bytes are counted),
so the collector costs the shared machine as little as possible; on SIGTERM or SIGINT it
prints how many exports and bytes it took.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from concurrent import futures
from typing import Any

import grpc

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


class _Sink(grpc.GenericRpcHandler):
    def __init__(self) -> None:
        self.exports = 0
        self.bytes = 0
        self._lock = threading.Lock()

    def _export(self, request: bytes, context: Any) -> bytes:
        with self._lock:
            self.exports += 1
            self.bytes += len(request)
        return b""  # an empty ExportTraceServiceResponse

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        if handler_call_details.method != EXPORT:
            return None
        return grpc.unary_unary_rpc_method_handler(self._export)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="port on 127.0.0.1")
    args = parser.parse_args(argv)
    sink = _Sink()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers([sink])
    if server.add_insecure_port(f"127.0.0.1:{args.port}") == 0:
        print(f"otlp sink: port {args.port} is taken", file=sys.stderr)
        return 1
    server.start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"otlp sink on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
    stop.wait()
    server.stop(grace=1).wait()
    print(f"otlp sink: {sink.exports} exports, {sink.bytes} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
