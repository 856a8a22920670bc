"""The queue's rules on fake time, no disk: priority, leases, epochs, fencing.

Hypothesis drives any interleaving of enqueues, registrations, dequeues,
renewals and completions (by the leader and by stale or foreign callers) and
time passing, and checks every answer against a model keyed by (-books,
sequence) with its own epoch and leases."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from bookstore.order_queue.state import (
    BadRequest,
    Item,
    LeaderAlive,
    LeaseLost,
    QueueError,
    QueueState,
    StaleEpoch,
    UnknownReplica,
)

LEASE_S = 2.0
FAILURE_S = 0.5
REPLICAS = (1, 2, 3, 4)


def new_state() -> QueueState:
    ids = itertools.count(1)
    return QueueState(
        lease_s=LEASE_S,
        failure_timeout_s=FAILURE_S,
        replica_ids=REPLICAS,
        lease_ids=lambda: f"l{next(ids)}",
    )


def enqueue(state: QueueState, order_id: str, books: int, sequence: int) -> None:
    state.on_enqueued(state.new_order(order_id, [Item("b", "t", books)], "c"), sequence)


class QueueModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.state = new_state()
        self.now = 0.0
        self.sequence = 0
        self.epoch = 0
        self.leader = 0
        self.active_at = float("-inf")
        self.waiting: dict[str, tuple[int, int]] = {}  # order id -> (-books, sequence)
        self.leased: dict[str, tuple[str, float, int]] = {}  # id -> (lease, expires, epoch)
        self.executed: set[str] = set()

    def _expire(self) -> None:
        for oid, (_, expires, _) in list(self.leased.items()):
            if expires <= self.now:
                del self.leased[oid]

    def _deliverable(self) -> list[tuple[tuple[int, int], str]]:
        return sorted((key, oid) for oid, key in self.waiting.items() if oid not in self.leased)

    def _caller(self, data: st.DataObject) -> tuple[int, int]:
        """(replica, epoch): mostly the leader's, else stale, another's or foreign."""
        who = data.draw(st.sampled_from(["leader", "leader", "stale", "other", "foreign"]))
        if who == "leader":
            return self.leader, self.epoch
        if who == "stale":
            return self.leader, data.draw(st.sampled_from([self.epoch - 1, self.epoch + 1]))
        if who == "other":
            return data.draw(st.sampled_from(REPLICAS)), self.epoch
        return 5, self.epoch

    def _refusal(self, replica: int, epoch: int) -> type[QueueError] | None:
        if replica <= 0:  # the leader before any registration
            return BadRequest
        if replica not in REPLICAS:
            return UnknownReplica
        if replica != self.leader or epoch != self.epoch or epoch == 0:
            return StaleEpoch
        return None

    @rule(books=st.integers(min_value=1, max_value=5))
    def enqueue(self, books: int) -> None:
        self.sequence += 1
        oid = f"o{self.sequence}"
        enqueue(self.state, oid, books, self.sequence)
        self.waiting[oid] = (-books, self.sequence)

    @rule(replica=st.sampled_from(REPLICAS))
    def register(self, replica: int) -> None:
        if self.leader > replica and self.now - self.active_at < FAILURE_S:
            with pytest.raises(LeaderAlive):
                self.state.check_register(replica, self.now)
            return
        self.state.check_register(replica, self.now)
        self.epoch += 1
        self.leader, self.active_at = replica, self.now
        self.state.on_registered(replica, self.epoch, self.now)
        self.leased = {o: lease for o, lease in self.leased.items() if lease[2] >= self.epoch}

    @rule(data=st.data())
    def dequeue(self, data: st.DataObject) -> None:
        replica, epoch = self._caller(data)
        refusal = self._refusal(replica, epoch)
        if refusal is not None:
            with pytest.raises(refusal):
                self.state.take(replica, epoch, self.now)
            return
        self.active_at = self.now
        self._expire()
        expected = self._deliverable()
        taken = self.state.take(replica, epoch, self.now)
        if not expected:
            assert taken is None
            return
        assert taken is not None
        order, lease = taken
        assert order.order_id == expected[0][1]
        self.leased[order.order_id] = (lease.lease_id, self.now + LEASE_S, epoch)

    @precondition(lambda self: bool(self.leased))
    @rule(data=st.data(), right_lease=st.booleans())
    def renew(self, data: st.DataObject, right_lease: bool) -> None:
        oid = data.draw(st.sampled_from(sorted(self.leased)))
        replica, epoch = self._caller(data)
        lease_id = self.leased[oid][0] if right_lease else "someone-else"
        refusal = self._refusal(replica, epoch)
        if refusal is None:
            self.active_at = self.now
            self._expire()
            if oid not in self.leased or not right_lease:
                refusal = LeaseLost
        if refusal is not None:
            with pytest.raises(refusal):
                self.state.renew(replica, epoch, oid, lease_id, self.now)
            return
        assert self.state.renew(replica, epoch, oid, lease_id, self.now).expires_at == (
            self.now + LEASE_S
        )
        self.leased[oid] = (lease_id, self.now + LEASE_S, epoch)

    @precondition(lambda self: bool(self.waiting))
    @rule(data=st.data(), right_lease=st.booleans())
    def complete(self, data: st.DataObject, right_lease: bool) -> None:
        oid = data.draw(st.sampled_from(sorted(self.waiting)))
        replica, epoch = self._caller(data)
        held = self.leased.get(oid)
        lease_id = held[0] if held and right_lease else "someone-else"
        refusal = self._refusal(replica, epoch)
        if refusal is None:
            self.active_at = self.now
            if held is not None and not right_lease:
                refusal = LeaseLost  # another lease holds it (even if it ran out)
        if refusal is not None:
            with pytest.raises(refusal):
                self.state.check_complete(replica, epoch, oid, lease_id, "executed", "", self.now)
            return
        self.state.check_complete(replica, epoch, oid, lease_id, "executed", "", self.now)
        self.state.on_completed(oid, duplicate=False)
        self.leased.pop(oid, None)
        del self.waiting[oid]
        self.executed.add(oid)

    # Exact binary fractions, so that time lands on a lease's or the timeout's edge.
    @rule(seconds=st.sampled_from([0.25, 0.5, 1.0, 2.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @invariant()
    def the_counts_match_the_model(self) -> None:
        assert self.state.depth == len(self.waiting)
        assert self.state.executed == len(self.executed)
        assert not (self.executed & set(self.state.orders))
        assert (self.state.epoch, self.state.leader_id) == (self.epoch, self.leader)
        assert self.state.leader_active_at == self.active_at

    @invariant()
    def peek_matches_the_model(self) -> None:
        self.state.expire(self.now)
        self._expire()
        assert set(self.state.leases) == set(self.leased)
        expected = [oid for _, oid in self._deliverable()[:5]]
        assert [o.order_id for o in self.state.peek(5)] == expected


QueueModel.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_queue_matches_the_model = QueueModel.TestCase


def leader(state: QueueState, replica: int, now: float) -> int:
    state.check_register(replica, now)
    epoch = state.epoch + 1
    state.on_registered(replica, epoch, now)
    return epoch


def test_a_lower_id_registers_once_the_leader_was_quiet_for_the_failure_timeout() -> None:
    state = new_state()
    epoch = leader(state, 4, now=0.0)
    state.take(4, epoch, now=1.0)  # a sign of life
    with pytest.raises(LeaderAlive, match="replica 4 holds epoch 1"):
        state.check_register(3, now=1.4)
    state.check_register(4, now=1.4)  # the same or a higher id may
    assert leader(state, 3, now=1.5) == epoch + 1


def test_a_long_poll_taking_again_is_no_sign_of_life() -> None:
    state = new_state()
    epoch = leader(state, 4, now=0.0)
    assert state.take(4, epoch, now=0.1) is None
    assert state.take(4, epoch, now=0.9, again=True) is None  # still waiting, paused maybe
    state.check_register(3, now=0.9)  # 4's call arrived 0.8 s ago


def test_an_expired_lease_is_delivered_again_ahead_of_lower_priority() -> None:
    state = new_state()
    enqueue(state, "big", 4, 1)
    enqueue(state, "small", 1, 2)
    epoch = leader(state, 1, now=0.0)
    first = state.take(1, epoch, now=0.0)
    assert first is not None and first[0].order_id == "big"
    assert state.expire(now=LEASE_S - 0.1) == 0
    again = state.take(1, epoch, now=LEASE_S)
    assert again is not None and again[0].order_id == "big" and again[0].deliveries == 2
    with pytest.raises(LeaseLost):  # the old lease no longer renews or completes
        state.renew(1, epoch, "big", first[1].lease_id, now=LEASE_S)
    with pytest.raises(LeaseLost):
        state.check_complete(1, epoch, "big", first[1].lease_id, "executed", "", LEASE_S)


def test_an_order_whose_lease_ran_out_may_still_be_completed_under_its_epoch() -> None:
    state = new_state()
    enqueue(state, "a", 1, 1)
    epoch = leader(state, 1, now=0.0)
    taken = state.take(1, epoch, now=0.0)
    assert taken is not None
    assert state.expire(now=LEASE_S) == 1
    state.check_complete(1, epoch, "a", taken[1].lease_id, "executed", "", LEASE_S)


def test_a_new_epoch_voids_the_old_leases_and_fences_the_old_leader() -> None:
    state = new_state()
    enqueue(state, "a", 2, 1)
    old = leader(state, 4, now=0.0)
    taken = state.take(4, old, now=0.0)
    assert taken is not None
    new = leader(state, 3, now=1.0)  # 4 quiet since 0.0
    assert not state.leases
    for refused in (
        lambda: state.take(4, old, now=1.0),
        lambda: state.renew(4, old, "a", taken[1].lease_id, now=1.0),
        lambda: state.check_complete(4, old, "a", taken[1].lease_id, "executed", "", 1.0),
        lambda: state.check_decision(old),
    ):
        with pytest.raises(StaleEpoch, match=f"current epoch is {new}"):
            refused()
    again = state.take(3, new, now=1.0)
    assert again is not None and again[0].order_id == "a"
