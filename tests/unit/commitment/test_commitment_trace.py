"""The record of an order's two-phase-commit messages the leader executor keeps for the
cluster view: the coordinator's actions and the answers it gets, bounded."""

from __future__ import annotations

from bookstore.commitment.coordinator import Action, Coordinator, Kind
from bookstore.commitment.participant import Decision
from bookstore.commitment.trace import STEPS_PER_ORDER, CommitmentTrace

BOOKS, PAYMENT = "books-database", "payment"


def test_a_committed_order_reads_as_prepare_vote_decision_logged_ack() -> None:
    trace = CommitmentTrace()
    coordinator = Coordinator("o1", 3, [BOOKS, PAYMENT])

    def perform(actions: list[Action]) -> None:
        for action in actions:
            trace.sent("o1", 3, action)

    perform(coordinator.start(0.0))
    perform(coordinator.on_decision_read(None, "", 0.0))
    for participant in (BOOKS, PAYMENT):
        trace.answered("o1", 3, "vote", participant, "yes")
        perform(coordinator.on_vote(participant, True, "", 0.1))
    trace.answered("o1", 3, "logged", "decision-log", "commit")
    perform(coordinator.on_logged(Decision.COMMIT, "", 0.2))
    for participant in (BOOKS, PAYMENT):
        trace.answered("o1", 3, "ack", participant, "")
        perform(coordinator.on_ack(participant, 0.3))
    assert coordinator.phase.value == "done"
    assert [(s.kind, s.sender, s.receiver, s.detail) for s in trace.steps("o1")] == [
        ("prepare", "coordinator", BOOKS, ""),
        ("prepare", "coordinator", PAYMENT, ""),
        ("vote", BOOKS, "coordinator", "yes"),
        ("vote", PAYMENT, "coordinator", "yes"),
        ("decision", "coordinator", "decision-log", "commit"),
        ("logged", "decision-log", "coordinator", "commit"),
        ("decision", "coordinator", BOOKS, "commit"),
        ("decision", "coordinator", PAYMENT, "commit"),
        ("ack", BOOKS, "coordinator", ""),
        ("ack", PAYMENT, "coordinator", ""),
    ]
    assert {s.epoch for s in trace.steps("o1")} == {3}
    assert all(s.at.endswith("Z") for s in trace.steps("o1"))


def test_the_trace_is_bounded_per_order_and_in_orders() -> None:
    trace = CommitmentTrace(kept=2)
    coordinator = Coordinator("o1", 1, [BOOKS])
    coordinator.start(0.0)
    (prepare,) = coordinator.on_decision_read(None, "", 0.0)
    assert prepare.kind is Kind.PREPARE
    for _ in range(STEPS_PER_ORDER + 5):
        trace.sent("o1", 1, prepare)  # resends
    assert len(trace.steps("o1")) == STEPS_PER_ORDER
    (log_abort,) = coordinator.on_vote(BOOKS, False, "no copies", 0.1)
    assert log_abort.kind is Kind.LOG_DECISION
    trace.sent("o1", 1, log_abort)
    assert len(trace.steps("o1")) == STEPS_PER_ORDER  # still bounded
    trace.answered("o2", 1, "vote", BOOKS, "no: out of stock")
    trace.answered("o3", 1, "vote", BOOKS, "yes")
    assert trace.steps("o1") == () and len(trace.steps("o3")) == 1
    assert trace.steps("nobody") == ()
