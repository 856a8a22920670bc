"""The orchestrator's HTTP metrics: a pure ASGI middleware counting every request.

Requests by method, route template (never the raw path: `/orders/{orderId}`, not one
series per order) and status code, and their duration by route. A plain Starlette
route (the web pages) counts under its fixed path; a path that matched no route (or a
static file) as "unmatched".
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bookstore.telemetry import metrics

UNMATCHED = "unmatched"


class HttpMiddleware:
    """A pure ASGI middleware (little per-request cost) that sees the HTTP requests in
    `http`; anything else (the lifespan) passes through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class HttpMetricsMiddleware(HttpMiddleware):
    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            route = getattr(scope.get("route"), "path", None) or (
                scope["path"] if "endpoint" in scope else UNMATCHED
            )
            metrics.HTTP_REQUESTS.labels(scope["method"], route, str(status)).inc()
            metrics.HTTP_DURATION.labels(route).observe(time.perf_counter() - started)
