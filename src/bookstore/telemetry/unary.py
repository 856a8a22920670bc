"""The shape the telemetry interceptors share: wrap the behaviour of each unary call.

Streams are left alone (the checkout's live as long as the process and carry many
orders, so a stream's span or duration says nothing of one order).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

Behavior = Callable[[Any, "grpc.aio.ServicerContext[Any, Any]"], Awaitable[Any]]
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]]


class UnaryInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Runs each unary-unary call through the behaviour `wrap` returns for it (None:
    the call as it is)."""

    def wrap(self, behavior: Behavior, details: grpc.HandlerCallDetails) -> Behavior | None:
        raise NotImplementedError

    async def intercept_service(
        self, continuation: Continuation, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        wrapped = self.wrap(handler.unary_unary, details)
        if wrapped is None:
            return handler
        return grpc.unary_unary_rpc_method_handler(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
