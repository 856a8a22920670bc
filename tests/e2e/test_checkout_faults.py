"""End to end under faults: a checkout service killed or frozen, the launcher's
restarts, and its stop (no process left behind, even when it is killed itself)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import time
from collections.abc import Iterator

import httpx
import pytest
from checkout_requests import course_page_request
from harness import System, alive, launch, start_system

from bookstore.launcher import services_of
from bookstore.settings import from_env

pytestmark = pytest.mark.e2e

CHECKOUT_TIMEOUT_S = 2.0
# The longest a customer may wait for an answer while a service is down or frozen:
# the checkout timeout plus the orchestrator's slack and a margin for a busy machine.
ANSWER_BOUND_S = CHECKOUT_TIMEOUT_S + 4.0


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    with start_system({"ORCHESTRATOR_CHECKOUT_TIMEOUT_S": str(CHECKOUT_TIMEOUT_S)}) as running:
        yield running


def _checkout(client: httpx.Client) -> tuple[httpx.Response, float]:
    start = time.monotonic()
    response = client.post("/checkout", content=json.dumps(course_page_request()).encode())
    return response, time.monotonic() - start


def _assert_approved_again(system: System, client: httpx.Client) -> None:
    system.wait_healthy(timeout=30)
    deadline = time.monotonic() + 15
    while True:
        response, _ = _checkout(client)
        if response.status_code == 200:
            break
        assert time.monotonic() < deadline, response.text
        time.sleep(0.3)
    assert response.json()["status"] == "Order Approved"


def _assert_503_naming(response: httpx.Response, service: str) -> None:
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "SERVICE_UNAVAILABLE"
    assert service in error["message"]


def test_frozen_service_gives_503_in_bounded_time_then_recovers(
    system: System, client: httpx.Client
) -> None:
    pid = system.pid("fraud-detection")
    os.kill(pid, signal.SIGSTOP)
    try:
        response, took = _checkout(client)
        assert took < ANSWER_BOUND_S
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
        order = client.get("/api/orders?limit=1").json()["orders"][0]
        assert order["status"] == "Error"
    finally:
        os.kill(pid, signal.SIGCONT)
    _assert_approved_again(system, client)


async def _in_flight(base_url: str, count: int, kill: int, delay_s: float) -> list[httpx.Response]:
    """`count` concurrent checkouts; SIGKILL `kill` while they run."""
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0, limits=limits) as client:
        body = json.dumps(course_page_request()).encode()

        async def killer() -> None:
            await asyncio.sleep(delay_s)
            os.kill(kill, signal.SIGKILL)

        async def one(n: int) -> httpx.Response:
            await asyncio.sleep(n * 0.005)
            return await client.post("/checkout", content=body)

        task = asyncio.create_task(killer())
        responses = await asyncio.gather(*(one(n) for n in range(count)))
        await task
        return responses


def test_service_killed_mid_flight_gives_503_not_a_hang_and_is_restarted(
    system: System, client: httpx.Client
) -> None:
    pid = system.pid("suggestions")
    start = time.monotonic()
    responses = asyncio.run(_in_flight(system.base_url, 60, pid, 0.1))
    assert time.monotonic() - start < ANSWER_BOUND_S + 5
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503}, statuses
    print(f"in flight when suggestions was killed: {statuses.count(503)} of 60 got 503")
    for response in responses:
        if response.status_code == 503:
            _assert_503_naming(response, "suggestions")
        else:
            assert response.json()["status"] == "Order Approved"
    new_pid = system.wait_restarted("suggestions", pid)
    assert new_pid != pid and not alive(pid)
    assert "suggestions exited with signal 9" in system.log()
    _assert_approved_again(system, client)


def test_checkout_while_a_service_is_down_is_a_clear_503(
    system: System, client: httpx.Client
) -> None:
    pid = system.pid("transaction-verification")
    # Until the launcher has it back (after its back-off) the customer gets a 503
    # naming it, within the bound.
    os.kill(pid, signal.SIGKILL)
    response, took = _checkout(client)
    assert took < ANSWER_BOUND_S
    if response.status_code != 200:  # unless the launcher already brought it back
        _assert_503_naming(response, "transaction-verification")
    system.wait_restarted("transaction-verification", pid)
    _assert_approved_again(system, client)


def test_launcher_restarts_any_crashed_service(system: System) -> None:
    for name in ("order-executor-2", "order-queue", "orchestrator"):
        pid = system.pid(name)
        os.kill(pid, signal.SIGKILL)
        system.wait_restarted(name, pid)
    system.wait_healthy(timeout=30)
    with httpx.Client(base_url=system.base_url, timeout=30) as client:
        _assert_approved_again(system, client)


def test_launcher_stop_leaves_no_process() -> None:
    running = launch()
    pids = set(running.pids().values())
    assert len(pids) == len(services_of(from_env(running.env)))
    assert all(alive(p) for p in pids)
    assert running.stop() == []
    assert running.process.returncode == 0
    assert not any(alive(p) for p in pids)
    assert "all services stopped" in running.log()
    shutil.rmtree(running.data_dir)


def test_services_die_with_a_killed_launcher() -> None:
    running = launch()
    pids = set(running.pids().values())
    running.process.kill()
    running.process.wait(5)
    deadline = time.monotonic() + 5
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running.stop() == []
    shutil.rmtree(running.data_dir)
