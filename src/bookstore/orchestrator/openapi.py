"""Our generated OpenAPI document, with the course's CheckoutRequest as /checkout's body.

The body is parsed by hand (`parsing`: JSON whatever the Content-Type), so FastAPI
does not see the model; the document gets its schema and the error answers here.
The test in tests/unit/orchestrator compares the document with the course spec.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from bookstore.orchestrator.models import CheckoutRequest, ErrorResponse, OrderStatusResponse

_ERRORS = {
    400: "Malformed request: not JSON, not an object, a wrong field type, or over a limit",
    413: "Request body too large",
    422: "The Idempotency-Key was used before with a different body",
    500: "Server error",
    503: "A service needed for the checkout is down or too slow, the queue's disk is full, "
    "or the shop is busy (then with Retry-After)",
}

# The keyword arguments of /checkout's route that describe it in the document.
CHECKOUT_OPENAPI: dict[str, Any] = {
    "responses": {
        200: {"model": OrderStatusResponse, "description": "Order approval or rejection"},
        **{code: {"model": ErrorResponse, "description": d} for code, d in _ERRORS.items()},
    },
    "openapi_extra": {
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "Retry safely: the same key and body get the same answer",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/CheckoutRequest"}}
            },
        },
    },
}


def install_openapi(app: FastAPI) -> None:
    """Generate the document once, adding CheckoutRequest and its parts to the schemas."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        _, top = models_json_schema(
            [(CheckoutRequest, "validation")], ref_template="#/components/schemas/{model}"
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, definition in top.get("$defs", {}).items():
            components.setdefault(name, definition)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
