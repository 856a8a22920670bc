"""End to end: a queue restart customers don't notice.

The order queue is SIGKILLed while 8 clients place orders; the launcher restarts
it. The orchestrator retries the idempotent enqueue within its budget, so no
checkout is answered 503 for the queue, and every approved order is executed.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import Iterator

import httpx
import pytest
from checkout_requests import course_page_request
from harness import System, start_system

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

SEED = random.randrange(1 << 32)
print(f"test_checkout_queue_restart seed={SEED}")


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    # A generous enqueue budget: on a loaded 2-core machine the restart itself
    # (a new Python process, the database's recovery) can take seconds.
    with start_system({"ORCHESTRATOR_ENQUEUE_RETRY_S": "20"}) as running:
        yield running


async def _load_with_a_queue_kill(system: System, clients: int) -> list[httpx.Response]:
    answers: list[httpx.Response] = []
    stop = asyncio.Event()

    async def client(n: int, http: httpx.AsyncClient) -> None:
        rng = random.Random(SEED + n)
        while not stop.is_set():
            answers.append(await http.post("/checkout", json=course_page_request()))
            await asyncio.sleep(rng.random() * 0.05)

    async def answered(more: int) -> None:
        """Until `more` further checkouts have been answered."""
        target = len(answers) + more
        while True:
            if len(answers) >= target:
                return
            await asyncio.sleep(0.05)

    async with httpx.AsyncClient(base_url=system.base_url, timeout=60.0) as http:
        tasks = [asyncio.create_task(client(n, http)) for n in range(clients)]
        await answered(clients)
        old = system.pid("order-queue")
        os.kill(old, signal.SIGKILL)
        await asyncio.to_thread(system.wait_restarted, "order-queue", old, 60.0)
        await answered(clients)  # load goes on once the queue is back
        stop.set()
        await asyncio.gather(*tasks)
    return answers


def test_a_queue_killed_under_load_costs_no_checkout_a_503(system: System) -> None:
    answers = asyncio.run(_load_with_a_queue_kill(system, clients=8))
    refused = [a.json() for a in answers if a.status_code == 503]
    assert [r for r in refused if r["error"].get("service") == "order-queue"] == []
    approved = [a.json()["orderId"] for a in answers if a.status_code == 200]
    assert approved and len(set(approved)) == len(approved)
    print(f"{len(answers)} checkouts, {len(approved)} approved, {len(refused)} answered 503")
    deadline = time.monotonic() + 60
    waiting = set(approved)
    with httpx.Client(base_url=system.base_url, timeout=30.0) as http:
        while waiting and time.monotonic() < deadline:
            for order_id in list(waiting):
                order = http.get(f"/orders/{order_id}").json()
                if (order.get("execution") or {}).get("state") == "executed":
                    waiting.discard(order_id)
            if waiting:
                time.sleep(0.5)
    assert waiting == set(), f"{len(waiting)} approved orders never executed"
