"""The orchestrator's HTTP errors: one JSON shape for every failure.

Every error body is `{"error": {"code": "...", "message": "..."}}` — the course
page shows `error.message` — and never carries a stack trace, an internal
address or card data.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from bookstore.grpcutil import ServiceUnavailable

JSON = "application/json"
DISK_FULL = "DISK_FULL"


class ApiError(Exception):
    """An error the client should see, with its HTTP status and a named code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def json_response(body: Any, status: int = 200) -> Response:
    """A JSON response serialized with orjson (the fast path for every route)."""
    return Response(orjson.dumps(body), status_code=status, media_type=JSON)


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


def error_response(status: int, code: str, message: str) -> Response:
    return json_response(error_body(code, message), status)


def from_api_error(error: ApiError) -> Response:
    return error_response(error.status, error.code, error.message)


RETRY_AFTER_S = 1


def busy_answer() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """503 with Retry-After: the shop has as many checkouts in flight as it takes.

    Status, headers and body, for the admission middleware to send as they are."""
    body = orjson.dumps(
        error_body(
            "BUSY", "The shop is busy with other orders right now. Please try again shortly."
        )
    )
    headers = [(b"content-type", JSON.encode()), (b"retry-after", str(RETRY_AFTER_S).encode())]
    return 503, headers, body


def unavailable_response(exc: ServiceUnavailable) -> Response:
    """503 naming the service that is down or too slow (or the queue's full disk)."""
    if exc.detail.startswith(DISK_FULL):
        body = error_body(
            "DISK_FULL",
            f"The {exc.service} service's disk is full, so orders cannot be stored right "
            "now; nothing was charged or queued. Please try again later.",
        )
        body["error"]["service"] = exc.service
        return json_response(body, 503)
    body = error_body(
        "SERVICE_UNAVAILABLE",
        f"The {exc.service} service is not answering right now. Please try again shortly.",
    )
    body["error"]["service"] = exc.service
    return json_response(body, 503)
