"""The bookstore across hosts, with real network faults (needs root).

Every service runs in its own network namespace with its own 198.18.0.x
address, joined by a bridge in a switch namespace; the test drives it from a
client namespace. Faults are made in the switch: the leader's host unplugged
and plugged back, and a 2|2 split of the executors that leaves both halves
reaching the queue, the orchestrator and the client.

Every checkout attempt is recorded with what the client was told: approved
(acknowledged: it must be executed exactly once), rejected, or unknown (a
timeout or an error: it may be executed, but never twice). The queue's
execution records, read from its database, are the history that is checked.

"Never two replicas completing orders" is checked on that history: ordered by
the queue's execution sequence, the epochs never go down, and each epoch
belongs to one replica. So completions come from one leader at a time, and
once a newer leader completed an order no older one ever completes again.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from netlab import close_lab, open_lab
from netns_cluster import Cluster, order_body

pytestmark = [pytest.mark.netns, pytest.mark.timeout(300)]

ALL = (1, 2, 3, 4)
SETTLE_S = 30.0  # bound on an election to settle after a fault or its repair
EXECUTED_S = 20.0  # bound on an acknowledged order to be executed
CHECKOUT_TIMEOUT_S = 20.0  # the orchestrator itself waits up to 10 s for execution
SPLIT_S = 6.0  # how long the executors stay split


@dataclass
class Attempt:
    phase: str
    order_id: str | None
    outcome: str  # "approved" | "rejected" | "unknown"
    execution: dict[str, Any] | None  # what the checkout response said


class Ledger(list[Attempt]):
    """Every checkout the client attempted and what it was told."""


@pytest.fixture(scope="module")
def ledger() -> Ledger:
    return Ledger()


@pytest.fixture(scope="module")
def bookstore(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The whole system, one service per namespace, a leader elected; always torn down."""
    workdir: Path = tmp_path_factory.mktemp("netns")
    lab = open_lab(workdir)
    cluster = Cluster(lab, workdir / "data")
    try:
        cluster.build()
        cluster.start()
        cluster.wait_healthy(timeout=90)
        cluster.call("records", timeout=15, wait_watching=10)
        cluster.wait_for_leader(4, (1, 2, 3), timeout=SETTLE_S)
        yield cluster
    finally:
        try:
            cluster.close()
        finally:
            close_lab(lab)


def place_order(cluster: Cluster, ledger: Ledger, phase: str) -> Attempt:
    reply = cluster.call(
        "checkout",
        timeout=CHECKOUT_TIMEOUT_S + 5,
        body=order_body(len(ledger)),
        timeout_s=CHECKOUT_TIMEOUT_S,
    )
    body = reply.get("body") or {}
    order_id = body.get("orderId") if isinstance(body, dict) else None
    if reply["status"] == 200 and body.get("status") == "Order Approved":
        outcome = "approved"
    elif reply["status"] == 200 and body.get("status") == "Order Rejected":
        outcome = "rejected"
    else:
        outcome = "unknown"
    attempt = Attempt(phase, order_id, outcome, body.get("execution") if body else None)
    ledger.append(attempt)
    return attempt


def approved(cluster: Cluster, ledger: Ledger, phase: str) -> Attempt:
    attempt = place_order(cluster, ledger, phase)
    assert attempt.outcome == "approved", f"{phase}: {attempt}\n{cluster.describe()}"
    return attempt


def executed(cluster: Cluster, order_id: str) -> dict[str, Any]:
    """The queue's execution record of the order, waiting (bounded) for it."""

    def record() -> dict[str, Any] | None:
        status = cluster.call("order", order_id=order_id)
        if status is not None and status["state"] == "executed":
            result: dict[str, Any] = status["execution"]
            return result
        return None

    found: dict[str, Any] = cluster.wait_until(f"order {order_id} executed", record, EXECUTED_S)
    return found


def assert_one_leader_at_a_time(records: list[dict[str, Any]]) -> None:
    """Along the execution sequence epochs never decrease; one replica per epoch."""
    ordered = sorted(records, key=lambda r: r["sequence"])
    owner: dict[int, int] = {}
    for before, after in itertools.pairwise(ordered):
        assert after["epoch"] >= before["epoch"], f"epoch went back: {before} then {after}"
    for r in ordered:
        assert owner.setdefault(r["epoch"], r["executor"]) == r["executor"], (
            f"epoch {r['epoch']} completed by replicas {owner[r['epoch']]} and {r['executor']}"
        )


def settle(cluster: Cluster) -> int:
    """Wait until replica 4 leads all four; its epoch."""
    return cluster.wait_for_leader(4, ALL[:3], timeout=SETTLE_S)


def test_an_order_crosses_the_hosts_end_to_end(bookstore: Cluster, ledger: Ledger) -> None:
    epoch = settle(bookstore)
    attempt = approved(bookstore, ledger, "end-to-end")
    assert attempt.order_id
    record = executed(bookstore, attempt.order_id)
    assert record["executor"] == 4 and record["epoch"] >= epoch, record
    assert attempt.execution is not None and attempt.execution["state"] == "executed"
    assert attempt.execution["executor"] == 4


def test_cutting_the_leaders_host_elects_a_new_leader(bookstore: Cluster, ledger: Ledger) -> None:
    old_epoch = settle(bookstore)
    leader_host = bookstore.executor_host(4)
    bookstore.lab.cut(leader_host)
    try:
        started = time.monotonic()
        epoch = bookstore.wait_for_leader(3, (1, 2), timeout=SETTLE_S)
        print(f"replica 3 leads {time.monotonic() - started:.2f} s after the cut")
        assert epoch > old_epoch
        for _ in range(3):
            attempt = approved(bookstore, ledger, "leader cut off")
            assert attempt.order_id
            record = executed(bookstore, attempt.order_id)
            assert record["executor"] == 3 and record["epoch"] >= epoch, record
    finally:
        bookstore.lab.restore(leader_host)
    settle(bookstore)


def test_restoring_the_link_gives_the_highest_id_the_lead_again(
    bookstore: Cluster, ledger: Ledger
) -> None:
    settle(bookstore)
    leader_host = bookstore.executor_host(4)
    bookstore.lab.cut(leader_host)
    try:
        epoch_3 = bookstore.wait_for_leader(3, (1, 2), timeout=SETTLE_S)
    finally:
        bookstore.lab.restore(leader_host)
    started = time.monotonic()
    epoch_4 = settle(bookstore)
    print(f"replica 4 leads again {time.monotonic() - started:.2f} s after the repair")
    assert epoch_4 > epoch_3
    attempt = approved(bookstore, ledger, "link restored")
    assert attempt.order_id
    record = executed(bookstore, attempt.order_id)
    assert record["executor"] == 4 and record["epoch"] >= epoch_4, record


def test_a_split_of_the_executors_never_lets_two_replicas_complete(
    bookstore: Cluster, ledger: Ledger
) -> None:
    settle(bookstore)
    first = int(bookstore.call("queue")["executed"])
    hosts = [bookstore.executor_host(i) for i in ALL]
    bookstore.lab.split(hosts[:2], hosts[2:])
    roles: list[dict[int, Any]] = []
    during: list[Attempt] = []
    try:
        # Long enough for each half to notice the other is gone (failure timeout,
        # election, queue refusals), with orders flowing all the while.
        deadline = time.monotonic() + SPLIT_S
        while time.monotonic() < deadline and len(during) < 40:
            during.append(approved(bookstore, ledger, "2|2 split"))
            roles.append(
                {i: s and (s["role"], s["leader_id"]) for i, s in bookstore.executors().items()}
            )
            time.sleep(0.2)
        records = bookstore.durable_history()
    finally:
        bookstore.lab.heal()
    changes = [r for n, r in enumerate(roles) if n == 0 or r != roles[n - 1]]
    print("(role, leader) of each replica during the split, as it changed:", changes)
    # The split was real: replicas 1 and 2 stopped following 4 at some point.
    assert any(r[1] and r[2] and 4 not in (r[1][1], r[2][1]) for r in roles), roles
    in_split = [r for r in records if r["sequence"] > first]
    ids = {a.order_id for a in during}
    assert ids <= {r["order_id"] for r in in_split}, "an order placed in the split was not run"
    assert_one_leader_at_a_time(in_split)
    print("completed during the split by:", Counter(r["executor"] for r in in_split))
    settle(bookstore)


def test_nothing_acknowledged_is_lost_or_executed_twice(bookstore: Cluster, ledger: Ledger) -> None:
    settle(bookstore)
    for _ in range(2):
        approved(bookstore, ledger, "after the faults")

    def drained() -> dict[str, Any] | None:
        status: dict[str, Any] = bookstore.call("queue")
        return status if status["depth"] == 0 and status["leased"] == 0 else None

    queue = bookstore.wait_until("the queue drained", drained, EXECUTED_S)
    records = bookstore.durable_history()

    times = Counter(r["order_id"] for r in records)
    assert not [o for o, n in times.items() if n > 1], "an order was executed twice"
    assert len(records) == queue["executed"]
    assert sorted(r["sequence"] for r in records) == list(range(1, len(records) + 1))
    by_id = {r["order_id"]: r for r in records}
    for attempt in ledger:
        if attempt.outcome == "approved":
            assert attempt.order_id in by_id, f"acknowledged order lost: {attempt}"
            assert attempt.order_id is not None
            assert executed(bookstore, attempt.order_id) == by_id[attempt.order_id]
        elif attempt.outcome == "rejected":
            assert attempt.order_id not in by_id, f"a rejected order was executed: {attempt}"
    assert_one_leader_at_a_time(records)
    outcomes = Counter(a.outcome for a in ledger)
    print(f"attempts: {dict(outcomes)}; executions: {len(records)}")
    print("executions by replica:", Counter(r["executor"] for r in records))
