"""Two-phase commit with crashes at every step, checked by the audit.

After any mix of lost, duplicated and reordered messages, leader crashes,
deposed leaders that keep running, participant restarts and participants cut
off past the vote timeout, once the faults
stop every order is either executed (copies taken once, payment captured once,
the same amount) or rejected (nothing taken, nothing captured), and the
captured total is the sum over the executed orders.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from commit_world import PAYMENT, STOCK, OrderSpec, World
from hypothesis import given, settings
from hypothesis import strategies as st

from bookstore.commitment.participant import Decision

FAULTS: dict[str, Callable[[World], None]] = {
    "crash-leader": World.crash_leader,
    "pause-leader": World.pause_leader,
    "crash-books": lambda w: w.crash_participant(STOCK),
    "crash-payment": lambda w: w.crash_participant(PAYMENT),
    "isolate-books": lambda w: w.isolate(STOCK),
    "isolate-payment": lambda w: w.isolate(PAYMENT),
}


def clean_step(world: World) -> None:
    if world.net:
        world.deliver(0)
    else:
        world.tick()


def two_orders() -> list[OrderSpec]:
    return [OrderSpec("o1", 2, 4999, "ok"), OrderSpec("o2", 1, 1250, "declined")]


def test_without_faults_a_good_order_executes_and_a_declined_one_is_rejected() -> None:
    world = World(two_orders(), stock=5)
    world.heal()
    world.audit()
    assert world.completed == {"o1": Decision.COMMIT, "o2": Decision.ABORT}
    assert world.decisions["o2"] == (Decision.ABORT, "payment: card declined")
    assert (world.books.available, world.payment.captured) == (3, 4999)


def test_an_order_for_more_copies_than_remain_is_rejected_and_releases_nothing() -> None:
    world = World([OrderSpec("o1", 3, 900, "ok"), OrderSpec("o2", 3, 900, "ok")], stock=4)
    world.heal()
    world.audit()
    assert sorted(world.completed.values()) == [Decision.ABORT, Decision.COMMIT]
    assert (world.books.available, world.payment.captured) == (1, 900)


def clean_run_length() -> int:
    world = World(two_orders(), stock=5)
    steps = 0
    while len(world.completed) < 2 or world.net:
        clean_step(world)
        steps += 1
    return steps


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_fault_at_every_step_of_a_clean_run(fault: str) -> None:
    for at in range(clean_run_length() + 1):
        world = World(two_orders(), stock=5)
        for _ in range(at):
            clean_step(world)
        FAULTS[fault](world)
        world.heal()
        world.audit()
        assert world.completed["o2"] is Decision.ABORT


def test_a_deposed_leader_cannot_log_or_commit() -> None:
    world = World([OrderSpec("o1", 1, 500, "ok")], stock=1)
    old = world.leaders[0]
    while world.net:  # read decision, prepare, votes: the old leader logs COMMIT next
        clean_step(world)
        if world.net and world.net[0].kind == "log-decision":
            break
    world.pause_leader()
    world.deliver(0)  # the old leader's LOG_DECISION reaches the log: refused
    world.heal()
    world.audit()
    assert old.coordinators["o1"].phase.value == "fenced"
    assert world.decisions["o1"][0] is Decision.COMMIT  # the new leader's, at its epoch


# Mostly deliveries, so that many runs get as far as commits; ticks are rarer
# (each may pass a vote timeout) and faults rarer still.
OPS = st.tuples(
    st.sampled_from(["deliver"] * 10 + ["dup", "drop", "tick", "tick", *sorted(FAULTS)]),
    st.integers(0, 20),
)
ORDERS = st.lists(
    st.builds(
        OrderSpec,
        order_id=st.just(""),
        quantity=st.integers(1, 3),
        amount=st.integers(1, 100_000),
        card=st.sampled_from(["ok", "ok", "declined"]),
    ),
    min_size=1,
    max_size=3,
)


@settings(max_examples=300, deadline=None)
@given(orders=ORDERS, stock=st.integers(0, 6), ops=st.lists(OPS, max_size=80))
def test_any_faults_then_healing_pass_the_audit(
    orders: list[OrderSpec], stock: int, ops: list[tuple[str, int]]
) -> None:
    specs = [OrderSpec(f"o{i}", o.quantity, o.amount, o.card) for i, o in enumerate(orders)]
    world = World(specs, stock=stock)
    for op, n in ops:
        if op == "deliver":
            world.deliver(n)
        elif op == "dup":
            world.deliver(n, keep=True)
        elif op == "drop":
            world.drop(n)
        elif op == "tick":
            for _ in range(1 + n % 4):
                world.tick()
        else:
            FAULTS[op](world)
    world.heal()
    world.audit()
    for spec in specs:
        if spec.card == "declined":
            assert world.completed[spec.order_id] is Decision.ABORT
