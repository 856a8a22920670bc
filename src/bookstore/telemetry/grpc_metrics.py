"""RED metrics of a gRPC server: a server interceptor for every unary call.

Each finished unary call counts in `bookstore_grpc_server_handled_total` by method and
status code and is timed in `bookstore_grpc_server_handling_seconds`. Streams are left
alone: the checkout's streams live as long as the process and carry many orders, so
their duration says nothing (the events' own histogram does).
"""

from __future__ import annotations

import time
from typing import Any

import grpc

from bookstore.telemetry import metrics
from bookstore.telemetry.unary import Behavior, UnaryInterceptor

_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


def _code_name(code: Any, failed: bool) -> str:
    if code is None:
        return "UNKNOWN" if failed else metrics.GRPC_OK
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    found = _BY_VALUE.get(code)
    return found.name if found is not None else "UNKNOWN"


class MetricsInterceptor(UnaryInterceptor):
    def wrap(self, behavior: Behavior, details: grpc.HandlerCallDetails) -> Behavior:
        method = details.method

        async def counted(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started = time.perf_counter()
            failed = False
            try:
                return await behavior(request, context)
            except BaseException:
                failed = True
                raise
            finally:
                code = _code_name(context.code(), failed)
                metrics.GRPC_HANDLED.labels(method, code).inc()
                metrics.GRPC_DURATION.labels(method).observe(time.perf_counter() - started)

        return counted
