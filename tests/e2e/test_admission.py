"""End to end: admission control on the real orchestrator, adaptive as shipped.

Every executor is paused, so the admitted checkouts stay in flight (checked, queued,
waiting for their execution) while more arrive: those are answered 503 BUSY with
Retry-After and CORS, and counted; once the executors go on, every admitted
checkout is approved and executed. The orchestrator's app process is paused too
while the refusals are asked for: the gate answers them without it.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator

import httpx
import pytest
from checkout_requests import course_page_request
from harness import EXECUTOR_IDS, System, start_system
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.e2e

REFUSED = 5


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    env = {"ORCHESTRATOR_ADMISSION_ADAPTIVE": "on", "ORCHESTRATOR_EXECUTION_WAIT_S": "120"}
    with start_system(env) as running:
        yield running


async def _sample(client: httpx.AsyncClient, name: str, **labels: str) -> float:
    text = (await client.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"no {name} {labels} in /metrics")


async def _fill_then_knock(
    client: httpx.AsyncClient, limit: int, app: int
) -> tuple[list[asyncio.Task[httpx.Response]], list[httpx.Response]]:
    """`limit` checkouts left in flight, then REFUSED more, one after another, on a
    connection of their own, with the orchestrator's app process (`app`) stopped: the
    gate answers them by itself."""
    body = course_page_request()
    admitted = [asyncio.create_task(client.post("/checkout", json=body)) for _ in range(limit)]
    for _ in range(2400):  # the suite's timeout is the backstop; this, a bound on polls
        if await _sample(client, "bookstore_checkouts_in_flight") >= limit:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"{limit} checkouts were never in flight at once")
    os.kill(app, signal.SIGSTOP)
    async with httpx.AsyncClient(base_url=str(client.base_url), timeout=10.0) as knocking:
        refused = [await knocking.post("/checkout", json=body) for _ in range(REFUSED)]
    os.kill(app, signal.SIGCONT)
    return admitted, refused


def test_beyond_the_limit_the_answer_is_busy_and_the_admitted_are_approved(
    system: System,
) -> None:
    executors = [system.pid(f"order-executor-{i}") for i in EXECUTOR_IDS]
    app = system.pid("orchestrator")

    async def run() -> None:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(
            base_url=system.base_url, timeout=180.0, limits=limits
        ) as client:
            admission = (await client.get("/api/cluster")).json()["admission"]
            assert admission["adaptive"] and admission["inFlight"] == 0, admission
            limit = admission["limit"]
            assert admission["floor"] <= limit <= admission["ceiling"], admission
            before = await _sample(client, "bookstore_checkouts_total", outcome="unavailable")
            for pid in executors:
                os.kill(pid, signal.SIGSTOP)
            try:
                admitted, refused = await _fill_then_knock(client, limit, app)
                assert await _sample(client, "bookstore_admission_limit") == limit
            finally:
                for pid in [*executors, app]:
                    os.kill(pid, signal.SIGCONT)
            for response in refused:
                assert response.status_code == 503, response.text
                assert response.headers["content-type"] == "application/json"
                assert response.headers["retry-after"] == "1"
                assert response.headers["access-control-allow-origin"] == "*"
                assert response.json()["error"]["code"] == "BUSY"
            after = await _sample(client, "bookstore_checkouts_total", outcome="unavailable")
            assert after - before == REFUSED
            for task in admitted:
                answer = (await task).json()
                assert answer["status"] == "Order Approved", answer
                assert answer["execution"]["state"] == "executed", answer
            again = await client.post("/checkout", json=course_page_request())
            assert again.json()["status"] == "Order Approved", again.text
            admission = (await client.get("/api/cluster")).json()["admission"]
            assert admission["noLoadMs"] > 0, admission

    asyncio.run(run())
