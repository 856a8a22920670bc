"""The checkout state machine with fake time: no sockets, no event loop."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bookstore.orchestrator.flow import (
    Action,
    Answer,
    Cancel,
    Checkout,
    EventRecord,
    Finalize,
    State,
    Suggestion,
    Timeouts,
)

TV, FD, SUG = "transaction-verification", "fraud-detection", "suggestions"
ALL = frozenset({TV, FD, SUG})
TIMEOUTS = Timeouts(checkout=5.0, ack=1.0)
CLOCKS = {
    "a": (1, 0, 0),
    "b": (2, 0, 0),
    "c": (3, 0, 0),
    "d": (2, 1, 0),
    "e": (3, 2, 0),
    "f": (3, 2, 1),
}
SERVICE = {"a": TV, "b": TV, "c": TV, "d": FD, "e": FD, "f": SUG}
BOOK = Suggestion("b002", "Distributed Systems", "Maarten van Steen")


def report(event: str, ok: bool = True, reason: str = "") -> EventRecord:
    return EventRecord(event, event, SERVICE[event], CLOCKS[event], ok, reason, "rules", 0.0, 1.0)


def feed(machine: Checkout, *events: str, now: float = 1.0) -> list[Action]:
    actions: list[Action] = []
    for event in events:
        actions += machine.on_report(report(event), [BOOK] if event == "f" else [], now)
    return actions


def answer_of(actions: list[Action]) -> Answer:
    answers = [a for a in actions if isinstance(a, Answer)]
    assert len(answers) == 1
    return answers[0]


def test_six_successes_finalize_with_the_max_clock_and_answer_approved() -> None:
    machine = Checkout("o1", ALL, 0.0, TIMEOUTS)
    assert feed(machine, "a", "b", "c", "d", "e") == []
    actions = feed(machine, "f", now=2.0)
    assert actions[0] == Finalize(ALL, (3, 2, 1))
    outcome = answer_of(actions).outcome
    assert outcome.approved and outcome.suggestions == [BOOK]
    assert outcome.final_clock == (3, 2, 1) and [e.event for e in outcome.events] == list("abcdef")
    assert machine.deadline == 3.0
    for service in (TV, FD):
        assert machine.on_finalize_ack(service, None, 2.5) == []
    assert not machine.done
    machine.on_finalize_ack(SUG, None, 2.5)
    assert machine.done and machine.deadline is None


def test_a_failure_cancels_everywhere_and_the_cancel_clocks_reach_the_final_clock() -> None:
    machine = Checkout("o1", ALL, 0.0, TIMEOUTS)
    feed(machine, "a", "b")
    actions = machine.on_report(report("c", ok=False, reason="card expired"), [], 1.0)
    assert actions == [Cancel(ALL, "event c failed")]
    assert machine.state is State.CANCELLING and machine.deadline == 2.0
    assert machine.on_cancel_ack(TV, (3, 0, 0), 1.1) == []
    assert machine.on_cancel_ack(FD, (3, 4, 0), 1.2) == []
    actions = machine.on_cancel_ack(SUG, (0, 0, 2), 1.3)
    assert actions[0] == Finalize(ALL, (3, 4, 2))
    outcome = answer_of(actions).outcome
    assert not outcome.approved and outcome.reason == "card expired"
    assert outcome.suggestions == [] and outcome.cancel_clocks[FD] == (3, 4, 0)


def test_no_decision_within_the_checkout_timeout_cancels_and_answers_timed_out() -> None:
    machine = Checkout("o1", ALL, 10.0, TIMEOUTS)
    feed(machine, "a", "b", now=11.0)
    assert machine.on_tick(14.9) == []
    assert machine.on_tick(15.0) == [Cancel(ALL, "checkout timed out")]
    for service in (TV, FD):
        machine.on_cancel_ack(service, (2, 0, 0), 15.1)
    actions = machine.on_cancel_ack(SUG, (0, 0, 0), 15.2)
    answer = answer_of(actions)
    assert answer.timed_out and answer.down is None
    assert answer.outcome.final_clock == (2, 0, 0)


def test_events_finishing_during_a_cancel_reach_the_final_clock_but_do_not_approve() -> None:
    # Found by `bookstore simulate` (seed 0): a slow event outlived the checkout's
    # timeout; the running events finished during the cancel and made six successes.
    machine = Checkout("o1", ALL, 10.0, TIMEOUTS)
    feed(machine, "a", "b", "c", "d", "e", now=11.0)
    assert machine.on_tick(15.0) == [Cancel(ALL, "checkout timed out")]
    assert feed(machine, "f", now=15.1) == []
    for service in (TV, FD, SUG):
        actions = machine.on_cancel_ack(service, CLOCKS["f"], 15.2)
    answer = answer_of(actions)
    assert answer.timed_out and not answer.outcome.approved
    assert answer.outcome.final_clock == (3, 2, 1) and answer.outcome.suggestions == []


def test_an_abandoned_checkout_is_not_approved_by_events_finishing_after_it() -> None:
    machine = Checkout("o1", ALL, 0.0, TIMEOUTS)
    feed(machine, "a", "b", "c", "d", "e")
    machine.on_abandon(1.0)
    feed(machine, "f", now=1.1)
    for service in (TV, FD, SUG):
        actions = machine.on_cancel_ack(service, CLOCKS["f"], 1.2)
    answer = answer_of(actions)
    assert answer.down is None and not answer.timed_out and not answer.outcome.approved


def test_the_caller_giving_up_while_cancel_acks_are_awaited_still_finalizes_the_order() -> None:
    machine = Checkout("o1", ALL, 0.0, TIMEOUTS)
    feed(machine, "a")
    machine.on_tick(5.0)
    machine.on_cancel_ack(TV, (1, 0, 0), 5.1)
    actions = machine.on_abandon(5.2)
    assert actions[0] == Finalize(ALL, (1, 0, 0))
    assert machine.state is State.FINALIZING and machine.finalized
    assert feed(machine, "b", now=5.3) == []  # late: not part of the final clock any more


def test_the_caller_giving_up_while_running_cancels_the_order() -> None:
    machine = Checkout("o1", ALL, 0.0, TIMEOUTS)
    assert machine.on_abandon(1.0) == [Cancel(ALL, "the checkout was abandoned")]
    assert machine.on_abandon(1.5)[0] == Finalize(ALL, (0, 0, 0))


def test_missing_cancel_acks_finalize_with_what_was_reported() -> None:
    machine = Checkout("o1", ALL, 0.0, TIMEOUTS)
    machine.on_report(report("a", ok=False, reason="no items"), [], 1.0)
    machine.on_cancel_ack(TV, (1, 0, 0), 1.1)
    assert machine.on_tick(1.9) == []
    actions = machine.on_tick(2.0)
    assert actions[0] == Finalize(ALL, (1, 0, 0))
    assert answer_of(actions).outcome.reason == "no items"
    assert machine.on_tick(3.0) == [] and machine.done


def test_a_link_going_down_cancels_in_the_others_and_answers_unavailable() -> None:
    machine = Checkout("o1", ALL, 0.0, TIMEOUTS)
    feed(machine, "a", "b")
    assert machine.on_down(FD, 1.0) == [
        Cancel(frozenset({TV, SUG}), "fraud-detection is unavailable")
    ]
    machine.on_cancel_ack(TV, (2, 0, 0), 1.1)
    actions = machine.on_down(SUG, 1.2)
    assert actions[0] == Finalize(frozenset({TV}), (2, 0, 0))
    assert answer_of(actions).down == FD


def test_a_link_back_up_is_asked_to_finalize() -> None:
    machine = Checkout("o1", ALL, 0.0, TIMEOUTS)
    machine.on_down(SUG, 1.0)
    machine.on_up(SUG)
    assert machine.on_tick(2.0)[0] == Finalize(ALL, (0, 0, 0))


def test_a_failure_reported_before_the_link_broke_is_the_answer() -> None:
    machine = Checkout("o1", ALL, 0.0, TIMEOUTS)
    machine.on_report(report("b", ok=False, reason="no name"), [], 1.0)
    machine.on_down(FD, 1.1)
    actions = machine.on_tick(2.0)
    answer = answer_of(actions)
    assert answer.down is None and answer.outcome.reason == "no name"


def test_nothing_connected_finalizes_at_once_and_is_done() -> None:
    machine = Checkout("o1", ALL, 0.0, TIMEOUTS)
    for service in (TV, FD):
        machine.on_down(service, 1.0)
    actions = machine.on_down(SUG, 1.0)
    assert [type(a) for a in actions] == [Answer] and machine.done
    actions = Checkout("o2", (), 0.0, TIMEOUTS).on_tick(5.0)
    assert [type(a) for a in actions] == [Answer]


def test_an_inconsistent_finalize_ack_is_added_to_the_clock_errors() -> None:
    machine = Checkout("o1", ALL, 0.0, TIMEOUTS)
    outcome = answer_of(feed(machine, *"abcdef")).outcome
    machine.on_finalize_ack(TV, "transaction-verification clock [9,0,0] > final clock", 1.5)
    assert outcome.clock_errors == ["transaction-verification clock [9,0,0] > final clock"]
    assert machine.on_tick(2.0) == [] and machine.done


STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("report"), st.sampled_from(sorted(CLOCKS)), st.booleans()),
        st.tuples(st.just("cancel_ack"), st.sampled_from(sorted(ALL)), st.just(True)),
        st.tuples(st.just("finalize_ack"), st.sampled_from(sorted(ALL)), st.just(True)),
        st.tuples(st.just("down"), st.sampled_from(sorted(ALL)), st.just(True)),
        st.tuples(st.just("abandon"), st.just(""), st.just(True)),
        st.tuples(st.just("tick"), st.just(""), st.just(True)),
    ),
    max_size=30,
)


@given(STEPS)
def test_every_order_is_answered_once_finalized_once_and_ends(
    steps: list[tuple[str, str, bool]],
) -> None:
    machine = Checkout("o1", ALL, 0.0, TIMEOUTS)
    actions: list[Action] = []
    now = 0.0
    for kind, what, ok in steps:
        now += 0.5
        if kind == "report":
            actions += machine.on_report(report(what, ok, "" if ok else "no"), [], now)
        elif kind == "cancel_ack":
            actions += machine.on_cancel_ack(what, (0, 0, 0), now)
        elif kind == "finalize_ack":
            actions += machine.on_finalize_ack(what, None, now)
        elif kind == "down":
            actions += machine.on_down(what, now)
        elif kind == "abandon":
            actions += machine.on_abandon(now)
        else:
            actions += machine.on_tick(now)
    for _ in range(3):  # at most three deadlines: decision, cancel acks, finalize acks
        if machine.deadline is not None:
            actions += machine.on_tick(machine.deadline)
    assert machine.done
    assert len([a for a in actions if isinstance(a, Answer)]) == 1
    assert len([a for a in actions if isinstance(a, Finalize)]) <= 1
    assert len([a for a in actions if isinstance(a, Cancel)]) <= 1
