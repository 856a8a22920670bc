"""Hypothesis: any interleaving of enqueues, dequeues, completions, lease
expiry and epoch changes hands out orders exactly as a model keyed by
(-books, sequence) says."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from bookstore.order_queue.state import Item, Order, QueueState

LEASE_S = 2.0


class QueueModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.state = QueueState()
        self.now = 0.0
        self.epoch = 1
        self.sequence = 0
        self.waiting: dict[str, tuple[int, int]] = {}  # order id -> (-books, sequence)
        self.leased: dict[str, tuple[str, float, int]] = {}  # id -> (lease, expires, epoch)
        self.executed: set[str] = set()

    def _deliverable(self) -> list[tuple[tuple[int, int], str]]:
        return sorted((key, oid) for oid, key in self.waiting.items() if oid not in self.leased)

    @rule(books=st.integers(min_value=1, max_value=5))
    def enqueue(self, books: int) -> None:
        self.sequence += 1
        oid = f"o{self.sequence}"
        items = (Item("b", "t", books),)
        self.state.add(Order(oid, items, "c", books, self.sequence))
        self.waiting[oid] = (-books, self.sequence)

    @rule()
    def dequeue(self) -> None:
        # Model: expired leases first become deliverable again.
        for oid, (_, expires, _) in list(self.leased.items()):
            if expires <= self.now:
                del self.leased[oid]
        expected = self._deliverable()
        taken = self.state.take(self.now, 1, self.epoch, LEASE_S)
        if not expected:
            assert taken is None
            return
        assert taken is not None
        order, lease = taken
        assert order.order_id == expected[0][1]
        self.leased[order.order_id] = (lease.lease_id, self.now + LEASE_S, self.epoch)

    @precondition(lambda self: bool(self.leased))
    @rule(data=st.data())
    def complete(self, data: st.DataObject) -> None:
        oid = data.draw(st.sampled_from(sorted(self.leased)))
        lease_id = self.leased[oid][0]
        if self.state.may_complete(oid, lease_id):
            self.state.remove(oid)
            del self.leased[oid]
            del self.waiting[oid]
            self.executed.add(oid)

    @rule(seconds=st.sampled_from([0.1, 0.5, 1.0, 2.5]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @rule()
    def new_leader(self) -> None:
        self.epoch += 1
        self.state.release_older_than(self.epoch)
        self.leased.clear()

    @invariant()
    def depth_counts_every_unexecuted_order(self) -> None:
        assert self.state.depth == len(self.waiting)
        assert not (self.executed & set(self.state.orders))

    @invariant()
    def peek_matches_the_model(self) -> None:
        self.state.expire(self.now)
        for oid, (_, expires, _) in list(self.leased.items()):
            if expires <= self.now:
                del self.leased[oid]
        expected = [oid for _, oid in self._deliverable()[:5]]
        assert [o.order_id for o in self.state.peek(5)] == expected


QueueModel.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_queue_matches_the_priority_model = QueueModel.TestCase
