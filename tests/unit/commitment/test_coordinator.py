"""The coordinator's rules on fake time (see coordinator.py)."""

from __future__ import annotations

import pytest

from bookstore.commitment.coordinator import Action, Coordinator, Kind, Phase, Timings
from bookstore.commitment.participant import Decision

T = Timings(vote_timeout=1.0, resend_interval=0.2)
BOTH = ("books", "payment")


def preparing(now: float = 0.0) -> Coordinator:
    c = Coordinator("o1", 7, BOTH, T)
    assert c.start(now) == [Action(Kind.READ_DECISION)]
    assert c.on_decision_read(None, "", now) == [
        Action(Kind.PREPARE, "books"),
        Action(Kind.PREPARE, "payment"),
    ]
    return c


def test_all_yes_logs_commit_before_any_commit_is_sent() -> None:
    c = preparing()
    assert c.on_vote("books", True, "", 0.1) == []
    assert c.on_vote("payment", True, "", 0.1) == [
        Action(Kind.LOG_DECISION, decision=Decision.COMMIT)
    ]
    assert c.on_logged(Decision.COMMIT, "", 0.2) == [
        Action(Kind.COMMIT, "books"),
        Action(Kind.COMMIT, "payment"),
    ]
    assert c.on_ack("books", 0.3) == []
    assert c.on_ack("books", 0.3) == []  # a duplicate ack
    assert c.on_ack("payment", 0.3) == [Action(Kind.FINISHED, decision=Decision.COMMIT)]
    assert c.phase is Phase.DONE


def test_one_no_vote_decides_abort_at_once_with_its_reason() -> None:
    c = preparing()
    assert c.on_vote("payment", False, "insufficient funds", 0.1) == [
        Action(Kind.LOG_DECISION, decision=Decision.ABORT, reason="payment: insufficient funds")
    ]
    out = c.on_logged(Decision.ABORT, "payment: insufficient funds", 0.2)
    assert [a.kind for a in out] == [Kind.ABORT, Kind.ABORT]


def test_missing_votes_are_resent_then_count_as_no() -> None:
    c = preparing()
    c.on_vote("books", True, "", 0.05)
    assert c.on_tick(0.1) == []
    assert c.on_tick(0.2) == [Action(Kind.PREPARE, "payment")]
    out = c.on_tick(1.0)
    assert out == [
        Action(Kind.LOG_DECISION, decision=Decision.ABORT, reason="no vote from payment in time")
    ]
    assert c.on_vote("payment", True, "", 1.1) == []  # too late


def test_the_log_holds_the_first_decision_and_it_wins() -> None:
    c = preparing()
    c.on_vote("books", True, "", 0.1)
    c.on_vote("payment", True, "", 0.1)
    out = c.on_logged(Decision.ABORT, "books: out of stock", 0.2)
    assert [a.kind for a in out] == [Kind.ABORT, Kind.ABORT]
    assert (c.decision, c.reason) == (Decision.ABORT, "books: out of stock")


def test_the_log_and_the_decision_are_resent_until_answered() -> None:
    c = preparing()
    c.on_vote("books", True, "", 0.0)
    c.on_vote("payment", True, "", 0.0)
    assert c.on_tick(0.2) == [Action(Kind.LOG_DECISION, decision=Decision.COMMIT)]
    c.on_logged(Decision.COMMIT, "", 0.3)
    c.on_ack("payment", 0.3)
    assert c.on_tick(0.5) == [Action(Kind.COMMIT, "books")]


@pytest.mark.parametrize("decision", [Decision.COMMIT, Decision.ABORT])
def test_a_new_leader_finishes_a_logged_decision_without_preparing(decision: Decision) -> None:
    c = Coordinator("o1", 8, BOTH, T)
    c.start(0.0)
    out = c.on_decision_read(decision, "why", 0.0)
    assert {a.kind for a in out} == {Kind.COMMIT if decision is Decision.COMMIT else Kind.ABORT}
    assert {a.participant for a in out} == set(BOTH)


def test_stale_epoch_fences_the_coordinator_for_good() -> None:
    c = preparing()
    assert c.on_refused("books", "STALE_EPOCH", "epoch 7 is older than 8", 0.1) == []
    assert c.phase is Phase.FENCED
    assert c.on_tick(5.0) == []
    assert c.on_vote("payment", True, "", 5.0) == []


def test_a_refused_prepare_is_a_no_vote() -> None:
    c = preparing()
    out = c.on_refused("payment", "UNKNOWN_TOKEN", "no token tok_x", 0.1)
    assert out == [
        Action(
            Kind.LOG_DECISION,
            decision=Decision.ABORT,
            reason="payment: UNKNOWN_TOKEN: no token tok_x",
        )
    ]


def test_a_refused_commit_breaks_the_invariant_and_stops() -> None:
    c = preparing()
    c.on_vote("books", True, "", 0.0)
    c.on_vote("payment", True, "", 0.0)
    c.on_logged(Decision.COMMIT, "", 0.0)
    out = c.on_refused("books", "ALREADY_ABORTED", "txn o1 was aborted", 0.1)
    assert [a.kind for a in out] == [Kind.FAILED] and c.phase is Phase.FAILED
    assert "books refused commit: ALREADY_ABORTED" in out[0].reason


def test_a_transaction_needs_participants() -> None:
    with pytest.raises(ValueError, match="at least one participant"):
        Coordinator("o1", 1, (), T)
