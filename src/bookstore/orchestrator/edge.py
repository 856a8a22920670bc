"""The orchestrator's edge: CORS on every response, preflights, and a JSON 500.

The course page is served from another origin (port 8080, or a file: origin
`null`) and always parses the answer as JSON, errors included.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.types import Message, Receive, Scope, Send

from bookstore.orchestrator.errors import error_body
from bookstore.telemetry.http import HttpMiddleware

log = logging.getLogger(__name__)

CORS_HEADERS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-expose-headers", b"*"),
]


class EdgeMiddleware(HttpMiddleware):
    """CORS on every response (errors included), preflight answers, and a JSON 500
    without a stack trace for anything unhandled."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "OPTIONS":
            headers = dict(scope["headers"])
            if b"access-control-request-method" in headers:
                await _preflight(headers, send)
                return
        started = False

        async def send_with_cors(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), *CORS_HEADERS]
            await send(message)

        try:
            await self.app(scope, receive, send_with_cors)
        except Exception:
            log.exception("unhandled error in %s %s", scope["method"], scope["path"])
            if started:
                raise
            await _send_json(
                send, 500, error_body("INTERNAL_ERROR", "Something went wrong on our side.")
            )


async def _preflight(headers: dict[bytes, bytes], send: Send) -> None:
    requested = headers.get(b"access-control-request-headers", b"*")
    await send(
        {
            "type": "http.response.start",
            "status": 204,
            "headers": [
                *CORS_HEADERS,
                (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
                (b"access-control-allow-headers", requested),
                (b"access-control-max-age", b"600"),
                (b"vary", b"origin"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b""})


async def _send_json(send: Send, status: int, body: Any) -> None:
    payload = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *CORS_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
