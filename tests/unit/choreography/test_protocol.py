"""The choreography's pure core: one node's rules, then three nodes and the orchestrator's
state machine in memory under random delivery orders (no I/O, no event loop)."""

from __future__ import annotations

import random

from choreo_world import ORDER, Verdict, World
from hypothesis import given, settings
from hypothesis import strategies as st

from bookstore import vclock
from bookstore.choreography.protocol import (
    AckCancel,
    AckFinalize,
    Action,
    ClockError,
    Expired,
    Forget,
    Node,
    Report,
    Run,
    SendClock,
    Stop,
)
from bookstore.vclock import Clock

TV, FD, SUG = "transaction-verification", "fraud-detection", "suggestions"
OK, FAILED = Verdict(True), Verdict(False)


def node(service: str = FD, ttl_s: float = 60.0) -> Node[Verdict]:
    return Node(service, ttl_s=ttl_s)


def of(kind: type, actions: list[Action[Verdict]]) -> list[Action[Verdict]]:
    return [a for a in actions if isinstance(a, kind)]


# ---- one node -------------------------------------------------------------------------


def test_events_with_no_dependency_run_at_init() -> None:
    assert node(TV).on_init(ORDER, 0.0) == [Run(ORDER, "a"), Run(ORDER, "b")]


def test_updates_before_init_are_held_and_merged_without_a_tick() -> None:
    fd = node()
    assert fd.on_update(ORDER, "b", (2, 0, 0), 0.0, TV) == []
    assert fd.orders[ORDER].clock == (2, 0, 0)
    assert fd.on_init(ORDER, 1.0) == [Run(ORDER, "d")]  # e still waits for c


def test_a_local_event_ticks_the_own_entry_and_tells_peers_and_orchestrator() -> None:
    fd = node()
    fd.on_update(ORDER, "b", (2, 0, 0), 0.0, TV)
    fd.on_init(ORDER, 0.0)
    actions = fd.on_done(ORDER, "d", OK)
    assert actions == [
        SendClock(ORDER, "d", (2, 1, 0), (TV, SUG)),
        Report(ORDER, "d", (2, 1, 0), OK),
    ]
    assert fd.on_update(ORDER, "c", (3, 0, 0), 0.0, TV) == [Run(ORDER, "e")]
    assert fd.orders[ORDER].clock == (3, 1, 0)
    assert fd.on_done(ORDER, "e", OK)[1] == Report(ORDER, "e", (3, 2, 0), OK)
    assert fd.events_run == 2


def test_a_failed_event_is_reported_only_and_nothing_after_it_runs() -> None:
    fd = node()
    fd.on_update(ORDER, "b", (2, 0, 0), 0.0, TV)
    fd.on_init(ORDER, 0.0)
    assert fd.on_done(ORDER, "d", FAILED) == [Report(ORDER, "d", (2, 1, 0), FAILED)]
    assert fd.on_update(ORDER, "c", (3, 0, 0), 0.0, TV) == []  # e needs d known
    assert "d" not in fd.orders[ORDER].known


def test_each_event_runs_once_whatever_arrives_twice() -> None:
    fd = node()
    fd.on_init(ORDER, 0.0)
    assert fd.on_update(ORDER, "b", (2, 0, 0), 0.0, TV) == [Run(ORDER, "d")]
    assert fd.on_update(ORDER, "b", (2, 0, 0), 0.0, TV) == []
    assert fd.on_init(ORDER, 0.0) == []
    fd.on_done(ORDER, "d", OK)
    assert fd.on_done(ORDER, "d", OK) == []  # a second completion changes nothing
    assert fd.orders[ORDER].clock == (2, 1, 0)


def test_a_cancel_with_nothing_running_is_acknowledged_at_once() -> None:
    fd = node()
    fd.on_update(ORDER, "a", (1, 0, 0), 0.0, TV)
    assert fd.on_cancel(ORDER, 0.0) == [AckCancel(ORDER, (1, 0, 0))]
    assert fd.on_init(ORDER, 0.0) == []  # cancelled before its init: nothing runs
    assert fd.on_update(ORDER, "b", (2, 0, 0), 0.0, TV) == []


def test_a_cancel_stops_running_events_and_the_ack_waits_for_them() -> None:
    tv = node(TV)
    tv.on_init(ORDER, 0.0)
    assert tv.on_cancel(ORDER, 0.0) == [Stop(ORDER, ("a", "b"))]
    assert tv.on_stopped(ORDER, "a") == []  # b still runs
    # b finished before it could stop: it ticks, is reported (to the orchestrator
    # only: nothing more starts anywhere) and is in the ack's clock.
    assert tv.on_done(ORDER, "b", OK) == [
        Report(ORDER, "b", (1, 0, 0), OK),
        AckCancel(ORDER, (1, 0, 0)),
    ]
    assert tv.on_finalize(ORDER, (1, 0, 0)) == [
        Forget(ORDER),
        AckFinalize(ORDER, True, (1, 0, 0), ""),
    ]


def test_a_consistent_finalize_forgets_the_order_and_judges_late_messages() -> None:
    fd = node()
    fd.on_update(ORDER, "a", (1, 0, 0), 0.0, TV)
    actions = fd.on_finalize(ORDER, (3, 0, 0))
    assert actions == [Forget(ORDER), AckFinalize(ORDER, True, (1, 0, 0), "")]
    assert fd.orders == {} and fd.orders_finalized == 1
    assert fd.on_update(ORDER, "c", (3, 0, 0), 0.0, TV) == []  # late, within the final
    assert fd.on_init(ORDER, 0.0) == []
    assert fd.on_cancel(ORDER, 0.0) == [AckCancel(ORDER, (3, 0, 0))]
    (error,) = fd.on_update(ORDER, "c", (4, 0, 0), 0.0, TV)  # late, beyond it
    assert isinstance(error, ClockError) and "late update of event c" in error.message
    assert fd.clock_errors == 1 and fd.orders == {}


def test_an_inconsistent_finalize_is_an_error_and_the_order_waits_for_the_ttl() -> None:
    fd = node(ttl_s=10.0)
    fd.on_init(ORDER, 5.0)
    fd.on_update(ORDER, "c", (3, 0, 0), 5.0, TV)
    error, ack = fd.on_finalize(ORDER, (2, 0, 0))
    assert isinstance(error, ClockError) and "inconsistent finalize" in error.message
    assert ack == AckFinalize(
        ORDER, False, (3, 0, 0), "clock [3,0,0] of fraud-detection is not <= final clock [2,0,0]"
    )
    assert fd.orders[ORDER].flagged and fd.clock_errors == 1
    assert fd.on_tick(15.0) == []
    assert fd.on_tick(15.5) == [Expired(ORDER, 10.5, (3, 0, 0), True), Forget(ORDER)]
    assert fd.orders == {}


def test_an_event_finishing_after_the_final_clock_is_an_error() -> None:
    fd = node()
    fd.on_update(ORDER, "b", (2, 0, 0), 0.0, TV)
    fd.on_init(ORDER, 0.0)  # d runs; the orchestrator finalizes without waiting
    assert fd.on_finalize(ORDER, (2, 0, 0))[0] == Stop(ORDER, ("d",))
    (error,) = fd.on_done(ORDER, "d", OK)
    assert isinstance(error, ClockError) and "late event d" in error.message
    assert fd.on_stopped(ORDER, "d") == []  # one that stopped is no error


def test_orders_never_finalized_expire_and_their_events_stop() -> None:
    tv = node(TV, ttl_s=1.0)
    tv.on_init(ORDER, 0.0)
    assert tv.on_tick(2.0) == [
        Stop(ORDER, ("a", "b")),
        Expired(ORDER, 2.0, vclock.ZERO, False),
        Forget(ORDER),
    ]
    assert tv.on_done(ORDER, "a", OK) == []  # after its expiry: already said


def test_nodes_share_nothing() -> None:
    one, two = node(), node()
    one.on_update(ORDER, "b", (2, 0, 0), 0.0, TV)
    assert two.orders == {} and one.finalized is not two.finalized


# ---- three nodes and the orchestrator ------------------------------------------------------

events = st.frozensets(st.sampled_from("abcdef"))


@given(st.randoms(use_true_random=False))
@settings(deadline=None)  # a whole world per example: no wall-clock bound on a shared machine
def test_every_delivery_order_approves_with_the_partial_order_kept(rng: random.Random) -> None:
    world = World(rng).run()
    assert world.violations() == []
    assert world.answers[0].outcome.approved
    assert world.answers[0].outcome.final_clock == (3, 2, 1)
    assert sorted(world.clocks()) == list("abcdef")


@given(st.randoms(use_true_random=False), events, st.booleans())
@settings(max_examples=300, deadline=None)
def test_failures_cancels_and_lost_stop_races_keep_every_promise(
    rng: random.Random, fails: frozenset[str], abandon: bool
) -> None:
    """Recorded clocks respect every happens-before edge; the final clock counts what each
    service ran (events still running at a cancel included); every finalize is consistent
    and every service forgets the order."""
    world = World(rng, fails=fails, abandon=abandon).run()
    assert world.violations() == []
    assert world.answers[0].outcome.approved == (not fails and not world.abandoned)


def test_runs_do_meet_the_race_of_rule_5() -> None:
    """Events asked to stop by a cancel that finish all the same: counted and consistent."""
    lost = 0
    for seed in range(100):
        world = World(random.Random(seed), fails=frozenset("a")).run()
        assert world.violations() == [], seed
        lost += world.lost_races
    assert lost > 0


# ---- the checks catch bugs put in on purpose ---------------------------------------------


class NoMerge(Node[Verdict]):
    """Mutant: keeps a peer's event as known but never merges its clock."""

    def on_update(
        self, order_id: str, event: str, clock: Clock, now: float, sender: str = ""
    ) -> list[Action[Verdict]]:
        return super().on_update(order_id, event, vclock.ZERO, now, sender)


class EagerAck(Node[Verdict]):
    """Mutant: acknowledges a cancel at once, without waiting for running events."""

    def on_cancel(self, order_id: str, now: float) -> list[Action[Verdict]]:
        actions = super().on_cancel(order_id, now)
        order = self.orders.get(order_id)
        if order is None or not order.acks_owed:
            return actions
        order.acks_owed = 0
        return [*actions, AckCancel(order_id, order.clock)]


def caught(mutant: type[Node[Verdict]], fails: frozenset[str]) -> bool:
    for seed in range(300):
        world = World(random.Random(seed), fails=fails, make_node=lambda s: mutant(s, ttl_s=60.0))
        if world.run().violations():
            return True
    return False


def test_the_checks_catch_a_node_that_does_not_merge() -> None:
    assert caught(NoMerge, frozenset())


def test_the_checks_catch_a_cancel_acknowledged_before_its_running_events_end() -> None:
    assert caught(EagerAck, frozenset("a"))
