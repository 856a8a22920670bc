"""Schemathesis against the orchestrator's own /openapi.json (in-process, with fakes),
and a body built to stall the event loop.

Every generated request (valid by the schema, and invalid ones for the body) must be
answered without a 500, as JSON, with CORS headers.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from orchestrator_fakes import FakePipeline, FakeTracker

from bookstore.orchestrator import parsing
from bookstore.orchestrator.app import create_app
from bookstore.orchestrator.models import CheckoutRequest
from bookstore.orchestrator.store import OrderStore
from bookstore.settings import Settings

SETTINGS = Settings(execution_wait_s=0.05, checkout_timeout_s=1.0, rpc_timeout_s=0.2)
APP = create_app(SETTINGS, FakePipeline(), FakeTracker(), store=OrderStore(1000))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_answer_is_a_500_and_every_answer_is_json_with_cors(case: schemathesis.Case) -> None:
    response = case.call()
    assert response.status_code < 500, response.text
    headers = {name.lower(): values for name, values in response.headers.items()}
    assert headers["content-type"][0].startswith("application/json"), headers
    assert headers["access-control-allow-origin"] == ["*"]


async def test_a_megabyte_of_empty_items_is_refused_before_it_is_validated(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = b'{"items": [' + b", ".join([b"{}"] * 250_000) + b"]}"
    assert len(body) > 1_000_000
    validated = []

    def validate(data: object) -> CheckoutRequest:
        validated.append(data)
        return CheckoutRequest()

    monkeypatch.setattr(parsing.CheckoutRequest, "model_validate", validate)
    big, health = await asyncio.gather(
        client.post("/checkout", content=body), client.get("/healthz")
    )
    assert big.status_code == 400 and big.json()["error"]["code"] == "TOO_MANY_ITEMS"
    assert health.status_code == 200
    assert validated == []
