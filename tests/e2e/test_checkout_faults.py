"""End to end under faults: a checkout service killed or frozen, the launcher's
restarts, and its stop (no process left behind, even when it is killed itself)."""

from __future__ import annotations

import asyncio
import json
import os
import re
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
# A customer's wait is bounded by the orchestrator's checkout timeout, not by the
# service: a hang would run into the client's 30 s timeout (ReadTimeout), far beyond it.


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    with start_system({"ORCHESTRATOR_CHECKOUT_TIMEOUT_S": str(CHECKOUT_TIMEOUT_S)}) as running:
        yield running


def _checkout(client: httpx.Client) -> httpx.Response:
    return client.post("/checkout", content=json.dumps(course_page_request()).encode())


def _assert_approved_again(system: System, client: httpx.Client) -> None:
    system.wait_healthy(timeout=30)
    deadline = time.monotonic() + 15
    while True:
        response = _checkout(client)
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
        response = _checkout(client)
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
        order = client.get("/api/orders?limit=1").json()["orders"][0]
        assert order["status"] == "Error"
    finally:
        os.kill(pid, signal.SIGCONT)
    _assert_approved_again(system, client)


_IN_FLIGHT = re.compile(r"^bookstore_checkouts_in_flight (\S+)$", re.MULTILINE)


async def _in_flight(base_url: str, count: int, kill: int) -> list[httpx.Response]:
    """`count` concurrent checkouts; SIGKILL `kill` while they wait on it.

    It is frozen first, so none can finish before the kill; it is killed once the
    orchestrator counts checkouts in flight (its /metrics), well within their timeout."""
    limits = httpx.Limits(max_connections=count)
    body = json.dumps(course_page_request()).encode()
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=30.0, limits=limits) as client,
        httpx.AsyncClient(base_url=base_url, timeout=30.0) as watcher,
    ):
        os.kill(kill, signal.SIGSTOP)
        try:
            posts = [client.post("/checkout", content=body) for _ in range(count)]
            running = [asyncio.create_task(post) for post in posts]
            await _until_in_flight(watcher)
        finally:
            os.kill(kill, signal.SIGKILL)
        return await asyncio.gather(*running)


async def _until_in_flight(watcher: httpx.AsyncClient) -> None:
    """Until the orchestrator counts a checkout in flight."""
    while True:
        found = _IN_FLIGHT.search((await watcher.get("/metrics")).text)
        if found and float(found.group(1)) > 0:
            return
        await asyncio.sleep(0.01)


def test_service_killed_mid_flight_gives_503_not_a_hang_and_is_restarted(
    system: System, client: httpx.Client
) -> None:
    pid = system.pid("suggestions")
    responses = asyncio.run(_in_flight(system.base_url, 60, pid))
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503}, statuses
    assert 503 in statuses  # the kill hit checkouts in flight
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
    # naming it. The launcher is frozen meanwhile, so the checkout surely finds it down.
    os.kill(system.process.pid, signal.SIGSTOP)
    try:
        os.kill(pid, signal.SIGKILL)
        response = _checkout(client)
    finally:
        os.kill(system.process.pid, signal.SIGCONT)
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
