"""POST /checkout under abuse: length limits, admission control, idempotency keys, full disks."""

from __future__ import annotations

import httpx
from test_orchestrator_app import assert_error, course_request


async def test_a_text_field_over_its_limit_is_400_naming_it(client: httpx.AsyncClient) -> None:
    response = await client.post("/checkout", json=course_request(userComment="x" * 1001))
    assert assert_error(response, 400, "FIELD_TOO_LONG") == "userComment: at most 1000 characters"
    long_title = course_request(items=[{"name": "t" * 301, "quantity": 1}])
    response = await client.post("/checkout", json=long_title)
    assert assert_error(response, 400, "FIELD_TOO_LONG") == "items[0].name: at most 300 characters"
    many = course_request(notificationPreferences=["email"] * 21)
    message = assert_error(await client.post("/checkout", json=many), 400, "FIELD_TOO_LONG")
    assert message == "notificationPreferences: at most 20 entries"


async def test_a_text_field_at_its_limit_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.post("/checkout", json=course_request(userComment="x" * 1000))
    assert response.status_code == 200 and response.json()["status"] == "Order Approved"


async def test_the_openapi_document_states_the_limits(client: httpx.AsyncClient) -> None:
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    comment = schemas["CheckoutRequest"]["properties"]["userComment"]["anyOf"][0]
    assert comment["maxLength"] == 1000
