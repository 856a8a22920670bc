"""The participant's life cycle, rule by rule (see participant.py)."""

from __future__ import annotations

import pytest

from bookstore.commitment.participant import (
    AlreadyAborted,
    AlreadyCommitted,
    Decision,
    MemoryStore,
    Participant,
    StaleEpoch,
    State,
    TxnMismatch,
    UnknownTxn,
)


def yes(request: int) -> str:
    return ""


def no(request: int) -> str:
    return "card declined"


@pytest.fixture
def store() -> MemoryStore[int]:
    return MemoryStore()


@pytest.fixture
def p(store: MemoryStore[int]) -> Participant[int]:
    return Participant(store)


def test_a_yes_vote_is_durable_before_it_is_given(
    p: Participant[int], store: MemoryStore[int]
) -> None:
    vote = p.prepare("t", 3, 100, yes)
    assert (vote.yes, vote.state) == (True, State.PREPARED)
    record = store.get("t")
    assert record is not None and (record.state, record.epoch, record.request) == (
        State.PREPARED,
        3,
        100,
    )
    assert store.highest_epoch() == 3


def test_a_no_vote_aborts_and_a_repeated_prepare_answers_the_same_no(
    p: Participant[int],
) -> None:
    assert not p.prepare("t", 1, 100, no).yes
    again = p.prepare("t", 1, 100, yes)  # the check is not run again
    assert (again.yes, again.reason, again.state) == (False, "card declined", State.ABORTED)


def test_a_re_prepare_at_a_higher_epoch_is_idempotent_and_takes_the_epoch(
    p: Participant[int], store: MemoryStore[int]
) -> None:
    p.prepare("t", 1, 100, yes)
    assert p.prepare("t", 2, 100, no).yes  # first outcome, not a new vote
    record = store.get("t")
    assert record is not None and (record.state, record.epoch) == (State.PREPARED, 2)


def test_the_same_txn_with_another_request_is_refused(p: Participant[int]) -> None:
    p.prepare("t", 1, 100, yes)
    with pytest.raises(TxnMismatch, match=r"^TXN_MISMATCH: "):
        p.prepare("t", 1, 999, yes)


def test_stale_epochs_are_refused_and_change_nothing(
    p: Participant[int], store: MemoryStore[int]
) -> None:
    p.prepare("t", 5, 100, yes)
    for call in (
        lambda: p.prepare("u", 4, 1, yes),
        lambda: p.commit("t", 4),
        lambda: p.abort("t", 4),
    ):
        with pytest.raises(StaleEpoch, match=r"^STALE_EPOCH: epoch 4 is older than 5$"):
            call()
    assert store.get("u") is None
    record = store.get("t")
    assert record is not None and record.state is State.PREPARED


def test_commit_is_idempotent_and_refused_after_an_abort(p: Participant[int]) -> None:
    p.prepare("t", 1, 100, yes)
    first = p.commit("t", 1)
    assert first.state is State.COMMITTED
    assert p.commit("t", 2) == first  # a duplicate answers the first outcome
    with pytest.raises(AlreadyCommitted):
        p.abort("t", 2)
    p.prepare("u", 2, 100, yes)
    p.abort("u", 2)
    with pytest.raises(AlreadyAborted, match=r"^ALREADY_ABORTED: txn u was aborted$"):
        p.commit("u", 2)


def test_commit_of_a_txn_never_prepared_is_refused(
    p: Participant[int], store: MemoryStore[int]
) -> None:
    with pytest.raises(UnknownTxn):
        p.commit("t", 1)
    assert store.get("t") is None


def test_abort_of_an_unknown_txn_is_presumed_and_a_late_prepare_votes_no(
    p: Participant[int],
) -> None:
    assert p.abort("t", 1, "no vote from payment").state is State.ABORTED
    late = p.prepare("t", 1, 100, yes)
    assert (late.yes, late.reason) == (False, "no vote from payment")


def test_a_restarted_participant_applies_the_logged_decision_or_keeps_waiting(
    p: Participant[int],
) -> None:
    for txn in ("a", "b", "c"):
        p.prepare(txn, 1, 100, yes)
    resolved = [
        p.resolve("a", Decision.COMMIT),
        p.resolve("b", Decision.ABORT),
        p.resolve("c", None),
        # A decided txn is never changed by a (wrong) later resolution.
        p.resolve("a", Decision.ABORT),
    ]
    assert [r.state if r else None for r in resolved] == [
        State.COMMITTED,
        State.ABORTED,
        State.PREPARED,
        State.COMMITTED,
    ]
