"""End to end without a key: the rules and the catalogue answer, as before the AI."""

from __future__ import annotations

import re

import httpx
import pytest
from checkout_requests import course_page_request
from harness import System

pytestmark = pytest.mark.e2e


def test_without_a_key_rules_and_catalogue_answer(system: System, client: httpx.Client) -> None:
    body = client.post("/checkout", json=course_page_request()).json()
    assert body["status"] == "Order Approved"
    order = client.get(f"/orders/{body['orderId']}").json()
    events = {e["event"]: e["answeredBy"] for e in order["events"]}
    assert (events["d"], events["e"], events["f"]) == ("rules", "rules", "catalogue")
    log = system.log()
    for service in ("fraud-detection", "suggestions"):
        assert re.search(rf"{service} .*AI off: GEMINI_API_KEY is not set", log), service
    assert "AI on:" not in log
