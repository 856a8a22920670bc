"""End to end: the two-phase commit under faults, each run ending with the audit.

The leader is killed at each point of the protocol (the executor's test-only
BOOKSTORE_TEST_CRASH_AT hook kills it once per run), a participant is killed
after voting yes, and the leader is paused past its timeout mid-transaction
and then resumed: every acknowledged order still ends executed once or
rejected with nothing taken, and no order stays blocked.

A crash point is set when the system starts, so each has a system of its own; the
other faults take turns on one system, each leaving it settled for the next (the
audit checks the whole run so far).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from commitment_audit import Shop, audit, order, wait_for
from harness import System, start_system
from tls_support import transport

from bookstore.books_database.client import BooksDatabaseClient

pytestmark = pytest.mark.e2e

STOCK = 500
BOOKS = [f"b{n:03d}" for n in range(1, 11)]


def initial_stock(book_id: str) -> int:
    return STOCK


@pytest.fixture(scope="module")
def shared() -> Iterator[System]:
    with start_system({"BOOKS_INITIAL_STOCK": str(STOCK)}) as running:
        yield running


@pytest.fixture
def system(shared: System) -> Iterator[System]:
    """The module's system; every process back and the highest executor leading after."""
    yield shared
    shared.wait_settled()


def bodies(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [order({rng.choice(BOOKS): rng.randint(1, 3)}) for _ in range(n)]


def leader(system: System) -> tuple[int, int]:
    """(replica id, epoch) of the executors' leader, once there is one."""

    def probe() -> tuple[int, int] | None:
        found = httpx.get(system.base_url + "/api/cluster", timeout=5.0).json()["leader"]
        return None if found is None else (found["replicaId"], found["epoch"])

    found = wait_for(probe, 60.0, "a leader")
    assert isinstance(found, tuple)
    return found


class Load:
    """Checkouts posted from a background thread while a test injects a fault."""

    def __init__(self, shop: Shop, n: int, seed: int) -> None:
        self.thread = threading.Thread(target=shop.post_all, args=(bodies(n, seed), 8))

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join()


@pytest.mark.parametrize("point", ["after-prepare", "after-log", "between-commits"])
def test_the_leader_killed_at_each_point_of_the_protocol(point: str) -> None:
    seed = random.randrange(1 << 30)
    print(f"seed={seed}")
    env = {"BOOKS_INITIAL_STOCK": str(STOCK), "BOOKSTORE_TEST_CRASH_AT": point}
    with start_system(env) as system:
        shop = Shop(system)
        answers = shop.post_all(bodies(12, seed), workers=6)
        assert f"test crash at {point}" in system.log()
        assert all(a["status"] == "Order Approved" for a in answers), answers
        audit(shop, initial_stock)
        if point != "after-prepare":  # decided before the crash: the next leader finished it
            assert re.search(r"recovering order=\S+ decision=commit", system.log())


def test_an_order_confirmed_at_its_decision_is_committed_by_the_next_leader() -> None:
    """The customer is answered at the commit point: the leader dies right after its
    decision is logged, before any commit is sent. The order is confirmed all the
    same, and the next leader's recovery commits it: copies taken, payment captured,
    once."""
    env = {"BOOKS_INITIAL_STOCK": str(STOCK), "BOOKSTORE_TEST_CRASH_AT": "after-log"}
    with start_system(env) as system:
        shop = Shop(system)
        answer = shop.post(order({"b001": 2}))
        order_id = answer["orderId"]
        assert answer["status"] == "Order Approved"
        assert answer["execution"]["state"] == "executed", answer
        crash = f"test crash at after-log order={order_id}"
        wait_for(lambda: crash in system.log(), 60.0, "the leader's crash after the decision")
        report = audit(shop, initial_stock)
        assert report.executed == {order_id: answer["payment"]["amountCents"]}
        assert report.stock[1]["b001"] == STOCK - 2
        assert f"recovering order={order_id} decision=commit" in system.log()


def _books_primary(system: System) -> int:
    addresses = {
        int(k): v
        for k, v in (p.split("=", 1) for p in system.env["BOOKS_DATABASE_ADDRESSES"].split(","))
    }

    async def find() -> int:
        client = BooksDatabaseClient(
            addresses, channel_factory=transport(system.env, "launcher").channel
        )
        try:
            for i in addresses:
                status = await client.status(i)
                if status.role == "primary":
                    return i
            return 0
        finally:
            await client.close()

    found = wait_for(lambda: asyncio.run(find()), 30.0, "a books-database primary")
    assert isinstance(found, int)
    return found


@pytest.mark.parametrize("participant", ["payment", "books-database primary"])
def test_a_participant_killed_after_voting_yes(system: System, participant: str) -> None:
    seed = random.randrange(1 << 30)
    print(f"seed={seed}")
    shop = Shop(system)
    start = system.log_size()
    with Load(shop, 60, seed):
        wait_for(lambda: "approved=True" in system.log(start), 60.0, "a yes vote")
        name = "payment"
        if participant != "payment":
            name = f"books-database-{_books_primary(system)}"
        old = system.pid(name)
        os.kill(old, signal.SIGKILL)
        system.wait_restarted(name, old)
    assert len(shop.answers) == 60
    audit(shop, initial_stock)


def test_the_leader_paused_past_its_timeout_then_resumed_changes_nothing(system: System) -> None:
    seed = random.randrange(1 << 30)
    print(f"seed={seed}")
    shop = Shop(system)
    start = system.log_size()
    replica, epoch = leader(system)
    pid = system.pid(f"order-executor-{replica}")
    try:
        with Load(shop, 60, seed):
            wait_for(lambda: "decision=commit" in system.log(start), 60.0, "a decision")
            os.kill(pid, signal.SIGSTOP)
            wait_for(lambda: leader(system)[1] > epoch, 60.0, "a new leader")
            os.kill(pid, signal.SIGCONT)
    finally:
        os.kill(pid, signal.SIGCONT)
    audit(shop, initial_stock)
    # The resumed leader learnt it was deposed (from the queue or a participant).
    prefix = f"order-executor-{replica}"
    lines = [line for line in system.log(start).splitlines() if line.startswith(prefix)]
    assert any(re.search(r"stepped-down|fenced|STALE_EPOCH", line) for line in lines)
