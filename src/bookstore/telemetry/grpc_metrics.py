"""RED metrics of a gRPC server: a server interceptor for every unary call.

Each finished unary call counts in `bookstore_grpc_server_handled_total` by method and
status code and is timed in `bookstore_grpc_server_handling_seconds`. Streams are left
alone: the checkout's streams live as long as the process and carry many orders, so
their duration says nothing (the events' own histogram does).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from bookstore.telemetry import metrics

_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


def _code_name(code: Any, failed: bool) -> str:
    if code is None:
        return "UNKNOWN" if failed else metrics.GRPC_OK
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    found = _BY_VALUE.get(code)
    return found.name if found is not None else "UNKNOWN"


class MetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method
        behavior = handler.unary_unary

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

        return grpc.unary_unary_rpc_method_handler(
            counted,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
