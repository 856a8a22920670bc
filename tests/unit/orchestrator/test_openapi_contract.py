"""Our generated OpenAPI document stays compatible with the course's published spec
(data/bookstore-openapi.yaml, copied verbatim with its provenance header)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import yaml

SPEC = Path(__file__).parent / "data" / "bookstore-openapi.yaml"


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Follow $ref and drop the `null` branch pydantic adds to optional fields."""
    while True:
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            schema = doc["components"]["schemas"][name]
            continue
        options = schema.get("anyOf")
        if options:
            real = [o for o in options if o.get("type") != "null"]
            assert len(real) == 1, schema
            schema = real[0]
            continue
        return schema


def _shape(doc: dict[str, Any], schema: dict[str, Any]) -> Any:
    """The schema's types and property names, recursively, e.g. {"user": {"name": "string"}}."""
    schema = _resolve(doc, schema)
    kind = schema.get("type", "object" if "properties" in schema else None)
    if kind == "object":
        return {k: _shape(doc, v) for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        return [_shape(doc, schema["items"])]
    return kind


def _covers(ours: Any, theirs: Any, path: str = "") -> None:
    """Every property of `theirs` exists in `ours` with the same type (extras allowed)."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), f"{path}: expected an object, have {ours!r}"
        for key, value in theirs.items():
            assert key in ours, f"{path}.{key} is missing from our document"
            _covers(ours[key], value, f"{path}.{key}")
    elif isinstance(theirs, list):
        assert isinstance(ours, list), f"{path}: expected an array, have {ours!r}"
        _covers(ours[0], theirs[0], f"{path}[]")
    else:
        assert ours == theirs, f"{path}: type {ours!r}, the course spec says {theirs!r}"


def _body_schema(doc: dict[str, Any]) -> dict[str, Any]:
    body = doc["paths"]["/checkout"]["post"]["requestBody"]
    schema: dict[str, Any] = body["content"]["application/json"]["schema"]
    return schema


def _response_schema(doc: dict[str, Any], status: str) -> dict[str, Any]:
    response = doc["paths"]["/checkout"]["post"]["responses"][status]
    schema: dict[str, Any] = response["content"]["application/json"]["schema"]
    return schema


async def test_checkout_operation_matches_the_course_spec(client: httpx.AsyncClient) -> None:
    ours = (await client.get("/openapi.json")).json()
    theirs = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    _covers(_shape(ours, _body_schema(ours)), _shape(theirs, _body_schema(theirs)), "request")
    _covers(
        _shape(ours, _response_schema(ours, "200")),
        _shape(theirs, _response_schema(theirs, "200")),
        "200",
    )
    error = _shape(theirs, _response_schema(theirs, "4xx"))
    for status in ("400", "413", "503"):
        _covers(_shape(ours, _response_schema(ours, status)), error, status)
    assert "termsAccepted" in _shape(ours, _body_schema(ours))


async def test_openapi_documents_the_read_api(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in ("/checkout", "/healthz", "/api/books", "/orders/{order_id}", "/api/cluster"):
        assert path in paths
