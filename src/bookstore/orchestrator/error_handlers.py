"""FastAPI's own errors (unknown path, wrong method, a bad query) in our JSON error shape."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from bookstore.orchestrator.errors import error_response
from bookstore.orchestrator.parsing import field_path

_CODES = {400: "BAD_REQUEST", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "BODY_TOO_LARGE"}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else "Request failed."
    if exc.status_code == 404:
        message = f"Nothing at {request.url.path[:200]}."
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path[:200]}."
    response = error_response(exc.status_code, _CODES.get(exc.status_code, "HTTP_ERROR"), message)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    described = []
    for error in list(exc.errors())[:5]:
        loc = tuple(error.get("loc", ()))
        if loc and loc[0] in ("query", "path", "body", "header"):
            loc = loc[1:]
        described.append(f"{field_path(loc)}: {error.get('msg', 'invalid')}")
    return error_response(400, "INVALID_REQUEST", "; ".join(described) or "Invalid request.")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
