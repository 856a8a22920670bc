"""End to end: a checkout whose execution outlasts the wait answers "queued", and
GET /orders/{id} follows the order to "executed"."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import httpx
import pytest
from checkout_requests import course_page_request
from harness import EXECUTOR_IDS, System, start_system

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    with start_system({"ORCHESTRATOR_EXECUTION_WAIT_S": "0.5"}) as running:
        yield running


def test_a_slow_execution_answers_queued_then_the_order_is_followed_to_executed(
    system: System,
) -> None:
    executors = [system.pid(f"order-executor-{i}") for i in EXECUTOR_IDS]
    with httpx.Client(base_url=system.base_url, timeout=30.0) as client:
        for pid in executors:
            os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            body = client.post("/checkout", json=course_page_request()).json()
            waited = time.monotonic() - started
            assert body["status"] == "Order Approved", body
            assert body["execution"]["state"] == "queued", body
            order = client.get(f"/orders/{body['orderId']}").json()
            assert order["execution"]["state"] in ("queued", "leased"), order
        finally:
            for pid in executors:
                os.kill(pid, signal.SIGCONT)
        print(f"answered 'queued' after {waited:.2f} s with every executor paused")

        deadline = time.monotonic() + 30.0
        execution = order["execution"]
        while time.monotonic() < deadline and execution["state"] != "executed":
            time.sleep(0.2)
            execution = client.get(f"/orders/{body['orderId']}").json()["execution"]
        assert execution["state"] == "executed", execution
        assert execution["executor"] in EXECUTOR_IDS
        assert execution["epoch"] >= 1 and execution["sequence"] >= 1
        assert execution["executedAt"]
