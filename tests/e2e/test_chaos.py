"""Chaos with real processes: `bookstore up` with BOOKSTORE_CHAOS=1, each built-in
scenario under load (its audit: nothing lost, nothing doubled), message faults
through the panel's API, and the fault endpoints refused to anyone but 127.0.0.1.
The system is `chaos_system`, shared with the panel's browser tests (tests/conftest.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from harness import System

from bookstore.chaos.load import order_body

SCENARIO_TIMEOUT_S = 120.0


@pytest.fixture
def api(chaos_system: System) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=chaos_system.base_url, timeout=30.0) as c:
        yield c


def wait_done(api: httpx.Client) -> dict[str, Any]:
    deadline = time.monotonic() + SCENARIO_TIMEOUT_S
    while time.monotonic() < deadline:
        run: dict[str, Any] = api.get("/api/chaos").json()["scenario"]
        if run["done"]:
            return run
        time.sleep(0.5)
    raise TimeoutError("the scenario did not finish")


def leader(
    api: httpx.Client, exclude: int | None = None, want: int | None = None, timeout: float = 30.0
) -> int:
    """The leader's replica id, once there is one (other than `exclude`, or `want`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = api.get("/api/cluster").json().get("leader")
        if found and found["replicaId"] != exclude and want in (None, found["replicaId"]):
            return int(found["replicaId"])
        time.sleep(0.2)
    raise TimeoutError(f"no leader (other than {exclude}, or {want})")


@pytest.mark.parametrize("scenario", ["pause-leader", "split-executors", "kill-db-primary"])
def test_scenario_under_load_loses_and_doubles_nothing(
    chaos_system: System, api: httpx.Client, scenario: str
) -> None:
    leader(api)
    answer = api.post(f"/api/chaos/scenarios/{scenario}")
    assert answer.status_code == 202, answer.text
    run = wait_done(api)
    print(scenario, run["steps"], run["load"]["audit"])
    assert run["error"] is None
    audit = run["load"]["audit"]
    assert audit["acknowledged"] > 0 and audit["rejected"] > 0
    assert audit["lost"] == 0 and audit["doubled"] == 0
    assert audit["executed"] == audit["acknowledged"]
    assert "chaos: heal all" in chaos_system.log()


def test_bookstore_chaos_prints_the_audit_of_kill_leader(
    chaos_system: System, api: httpx.Client
) -> None:
    old = leader(api)
    done = subprocess.run(
        [sys.executable, "-m", "bookstore", "chaos", "kill-leader"],
        env=chaos_system.env,
        capture_output=True,
        text=True,
        timeout=SCENARIO_TIMEOUT_S,
    )
    print(done.stdout, done.stderr)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"killed order-executor-{old}" in done.stdout
    assert "lost                 0" in done.stdout
    assert "doubled              0" in done.stdout
    chaos_system.wait_restarted(f"order-executor-{old}", 0)


def test_isolate_takes_an_executor_out_and_heal_brings_it_back(
    chaos_system: System, api: httpx.Client
) -> None:
    old = leader(api)
    name = f"order-executor-{old}"
    api.post("/api/chaos/faults", json={"op": "isolate", "name": name}).raise_for_status()
    try:
        assert leader(api, exclude=old) != old
        rules = api.get("/api/chaos").json()["launcher"]["rules"]
        assert {"src": name, "dst": "*", "action": "drop", "delayMs": 0} in rules
    finally:
        api.post("/api/chaos/faults", json={"op": "heal", "name": name}).raise_for_status()
    assert leader(api, want=old) == old  # the highest id takes over again (Bully)
    assert f"chaos: isolate {name}" in chaos_system.log()


def test_the_load_button_sends_a_bounded_mix_and_audits_it(api: httpx.Client) -> None:
    answer = api.post("/api/chaos/load", json={"rate": 10, "durationS": 2})
    assert answer.status_code == 202, answer.text
    assert api.post("/api/chaos/load", json={"rate": 10, "durationS": 2}).status_code == 409
    deadline = time.monotonic() + SCENARIO_TIMEOUT_S
    while not (load := api.get("/api/chaos").json()["load"])["done"]:
        assert time.monotonic() < deadline, load
        time.sleep(0.5)
    audit = load["audit"]
    assert audit["sent"] == 20 and audit["acknowledged"] == 15 and audit["rejected"] == 5
    assert audit["executed"] == 15 and audit["lost"] == 0 and audit["doubled"] == 0
    assert api.post("/api/chaos/load", json={"rate": 500, "durationS": 2}).status_code == 400


def test_a_service_made_to_refuse_is_named_in_a_503_until_healed(
    chaos_system: System, api: httpx.Client
) -> None:
    body = order_body(0)
    rule = {"op": "rule", "src": "*", "dst": "fraud-detection", "action": "refuse"}
    api.post("/api/chaos/faults", json=rule).raise_for_status()
    try:
        deadline = time.monotonic() + 30
        while (answer := api.post("/checkout", json=body)).status_code != 503:
            assert time.monotonic() < deadline, answer.text
            time.sleep(0.2)
        assert "fraud-detection" in answer.json()["error"]["message"]
    finally:
        api.post("/api/chaos/faults", json={"op": "heal_all"}).raise_for_status()
    deadline = time.monotonic() + 30
    while (answer := api.post("/checkout", json=body)).status_code != 200:
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.2)
    assert answer.json()["status"] == "Order Approved"


def test_restart_gives_a_service_a_new_process(chaos_system: System, api: httpx.Client) -> None:
    old = chaos_system.pid("suggestions")
    api.post("/api/chaos/faults", json={"op": "restart", "name": "suggestions"}).raise_for_status()
    assert chaos_system.wait_restarted("suggestions", old) != old
    chaos_system.wait_healthy()


def test_unknown_process_or_scenario_is_refused(api: httpx.Client) -> None:
    assert api.post("/api/chaos/faults", json={"op": "kill", "name": "nope"}).status_code == 409
    assert api.post("/api/chaos/scenarios/nope").status_code == 404


def test_fault_endpoints_refuse_callers_not_on_127_0_0_1(chaos_system: System) -> None:
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=chaos_system.base_url, transport=transport) as other:
        assert other.get("/api/chaos").status_code == 403
        answer = other.post("/api/chaos/faults", json={"op": "heal_all"})
        assert answer.status_code == 403
