"""Reading and validating a checkout body: any Content-Type, strict types, limits.

Every refusal is an ApiError whose message names the field ("items[0].quantity:
expected an integer").
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from pydantic import ValidationError

from bookstore.orchestrator.errors import ApiError
from bookstore.orchestrator.models import CheckoutRequest
from bookstore.settings import Settings

_TYPE_MESSAGES = {
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "string_type": "expected a string",
    "bool_type": "expected a boolean",
    "bool_parsing": "expected a boolean",
    "list_type": "expected an array",
    "model_type": "expected an object",
    "model_attributes_type": "expected an object",
    "dict_type": "expected an object",
}


def field_path(loc: tuple[int | str, ...]) -> str:
    """("items", 0, "quantity") -> "items[0].quantity"."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def _describe(error: Any) -> str:
    path = field_path(tuple(error["loc"]))
    limit = (error.get("ctx") or {}).get("max_length")
    if error["type"] == "string_too_long":
        return f"{path}: at most {limit} characters"
    if error["type"] == "too_long":
        return f"{path}: at most {limit} entries"
    return f"{path}: {_TYPE_MESSAGES.get(error['type'], error['msg'])}"


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing (413) anything over `limit` bytes without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "BODY_TOO_LARGE", f"The request body is over {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "BODY_TOO_LARGE", f"The request body is over {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def _too_many_items(settings: Settings) -> ApiError:
    return ApiError(
        400,
        "TOO_MANY_ITEMS",
        f"items: at most {settings.max_items} order lines (different books) per order",
    )


def parse_checkout(body: bytes, settings: Settings) -> CheckoutRequest:
    """Validate a checkout body (any Content-Type); ApiError(400) names the field."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ApiError(400, "INVALID_JSON", "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ApiError(400, "INVALID_REQUEST", "body: expected a JSON object")
    raw_items = data.get("items")
    if isinstance(raw_items, list) and len(raw_items) > settings.max_items:
        # Before validation: 250,000 empty items would keep the event loop busy.
        raise _too_many_items(settings)
    try:
        request = CheckoutRequest.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        code = "FIELD_TOO_LONG" if all("too_long" in e["type"] for e in errors) else "INVALID_FIELD"
        raise ApiError(400, code, "; ".join(_describe(e) for e in errors[:5])) from None
    items = request.items or []
    distinct = {
        (item.bookId or "", " ".join((item.name or "").split()).casefold()) for item in items
    }
    if len(distinct) > settings.max_items:
        raise _too_many_items(settings)
    for i, item in enumerate(items):
        if item.quantity is not None and item.quantity > settings.max_quantity:
            raise ApiError(
                400,
                "QUANTITY_TOO_LARGE",
                f"items[{i}].quantity: at most {settings.max_quantity} copies of a book",
            )
    return request
