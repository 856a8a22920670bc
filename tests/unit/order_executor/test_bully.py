from bully_board import TIMINGS, Board
from hypothesis import given, settings
from hypothesis import strategies as st

from bookstore.order_executor.bully import (
    CANDIDATE,
    FOLLOWER,
    LEADER,
    Kind,
    Message,
    Node,
    Outgoing,
)


def test_highest_id_leads_after_a_simultaneous_start(board5: Board) -> None:
    board5.start_all()
    board5.run_until(lambda: board5.settled_on(5), limit=1.0)
    board5.run(2.0)
    assert board5.settled_on(5)
    assert board5.queue.grants == [(1, 5)]  # one registration, no churn


def test_leader_crash_elects_the_next_highest_within_the_failover_budget(board5: Board) -> None:
    board5.start_all()
    board5.run_until(lambda: board5.settled_on(5), limit=1.0)
    board5.crash(5)
    took = board5.run_until(lambda: board5.settled_on(4), limit=1.5)
    assert took < 1.5
    assert board5.queue.epoch == 2
    steps = [s.step for s in board5.nodes[4].steps]
    assert "won" in steps and "registered" in steps


def test_restarted_highest_id_takes_leadership_back(board4: Board) -> None:
    board4.start_all()
    board4.run_until(lambda: board4.settled_on(4), limit=1.0)
    board4.crash(4)
    board4.run_until(lambda: board4.settled_on(3), limit=1.5)
    epoch_of_3 = board4.queue.epoch
    board4.start(4)  # a fresh process: remembers nothing
    board4.run_until(lambda: board4.settled_on(4), limit=1.0)
    assert board4.queue.epoch > epoch_of_3
    assert board4.nodes[3].role == FOLLOWER


def test_two_replicas_killed_at_once(board4: Board) -> None:
    board4.start_all()
    board4.run_until(lambda: board4.settled_on(4), limit=1.0)
    board4.crash(4)
    board4.crash(3)
    board4.run_until(lambda: board4.settled_on(2), limit=2.0)


def test_lost_messages_still_converge_on_the_highest_live_id() -> None:
    for seed in range(5):
        board = Board([1, 2, 3, 4, 5], seed=seed)
        board.lossy(0.3)
        board.start_all()
        board.run(3.0)
        board.crash(5)
        board.run(4.0)
        board.drop = lambda o: False
        board.run_until(lambda b=board: b.settled_on(4), limit=3.0)  # type: ignore[misc]
        assert board.double_leadership == 0


def test_paused_leader_is_fenced_and_its_stale_messages_are_harmless(board4: Board) -> None:
    board4.start_all()
    board4.run_until(lambda: board4.settled_on(4), limit=1.0)
    old_epoch = board4.nodes[4].epoch
    board4.paused.add(4)
    # A paused process keeps its connections: only its silence gives it away.
    took = board4.run_until(lambda: board4.settled_on(3), limit=2.5)
    assert took >= TIMINGS.leader_silence
    # While 4 sleeps, its socket fills with ELECTIONs; on waking it
    # still believes it leads with the old epoch.
    board4.paused.discard(4)
    assert board4.nodes[4].is_working_leader and board4.nodes[4].epoch == old_epoch
    assert not board4.holds_queue(4)  # it can do nothing with the old epoch
    board4.run_until(lambda: board4.settled_on(4), limit=2.0)
    assert board4.nodes[4].epoch > old_epoch
    assert any(s.step == "stepped-down" or s.step == "called" for s in board4.nodes[4].steps)
    assert board4.double_leadership == 0


def test_a_coordinator_older_than_my_own_grant_is_ignored() -> None:
    node = Node(2, [1, 2, 3], TIMINGS)
    node.start(0.0)
    node.on_registered(7, 0.01)  # 3 was down: I led with the queue's epoch 7
    node.on_message(Message(Kind.COORDINATOR, 3, leader=3, epoch=8), 0.1)
    assert node.leader == 3 and node.role == FOLLOWER
    assert node.epoch == 7  # who leads is learnt from peers; the epoch is not
    # A late COORDINATOR from a reign older than my own grant changes nothing.
    node.on_message(Message(Kind.COORDINATOR, 1, leader=1, epoch=5), 0.2)
    node.on_message(Message(Kind.COORDINATOR, 3, leader=3, epoch=5), 0.2)
    assert node.leader == 3 and node.steps[-1].step == "ignored"


FORGED_EPOCH = 2**63


def test_a_forged_coordinator_with_a_huge_epoch_changes_nothing_lasting(board4: Board) -> None:
    board4.start_all()
    board4.run_until(lambda: board4.settled_on(4), limit=1.0)
    grants = len(board4.queue.grants)
    # The attack seen in the field: one forged COORDINATOR to replica 4, and
    # its variants to every node from every claimed sender.
    for to in board4.ids:
        for sender in board4.ids:
            forged = Message(Kind.COORDINATOR, sender, leader=sender, epoch=FORGED_EPOCH)
            board4.send(sender, [Outgoing(to, forged)])
    board4.run(3.0)
    assert board4.settled_on(4)
    assert all(n.epoch < FORGED_EPOCH for n in board4.nodes.values())
    # Forged claims by 1..3 cost the leader nothing; the one forged claim in
    # 4's name sends 1..3 to follow 4 (already true). No re-registration.
    assert len(board4.queue.grants) == grants
    assert board4.double_leadership == 0


def test_a_follower_stays_while_heartbeats_come_and_elects_after_silence() -> None:
    node = Node(1, [1, 2], TIMINGS)
    node.start(0.0)
    now = 0.01
    node.on_message(Message(Kind.COORDINATOR, 2, leader=2, epoch=3), now)
    for _ in range(10):  # ten heartbeats, each within the silence
        now += TIMINGS.heartbeat
        assert node.on_tick(now) == []
        node.on_message(Message(Kind.COORDINATOR, 2, leader=2, epoch=3), now)
    assert node.role == FOLLOWER and node.leader == 2
    out = node.on_tick(now + TIMINGS.leader_silence)
    assert node.role == CANDIDATE
    assert [(o.to, o.message.kind) for o in out] == [(2, Kind.ELECTION)]


def test_a_registered_leader_heartbeats_every_interval_and_stops_when_fenced() -> None:
    node = Node(4, [1, 2, 3, 4], TIMINGS)
    node.start(0.0)
    node.on_registered(3, 0.01)
    assert node.on_tick(0.01 + TIMINGS.heartbeat / 2) == []
    out = node.on_tick(0.01 + TIMINGS.heartbeat)
    assert {(o.to, o.message.kind, o.message.epoch) for o in out} == {
        (p, Kind.COORDINATOR, 3) for p in (1, 2, 3)
    }
    node.on_fenced(1.0, "STALE_EPOCH: current epoch is 4")
    assert node.role == FOLLOWER and not node.is_working_leader
    assert node.on_tick(1.0 + 2 * TIMINGS.heartbeat) == []


def test_a_lost_connection_to_my_leader_elects_at_once_and_to_others_changes_nothing() -> None:
    node = Node(2, [1, 2, 3, 4], TIMINGS)
    node.start(0.0)
    node.on_message(Message(Kind.COORDINATOR, 4, leader=4, epoch=1), 0.01)
    assert node.on_leader_lost(3, 0.1) == []  # not my leader
    assert node.role == FOLLOWER
    out = node.on_leader_lost(4, 0.2)
    assert node.role == CANDIDATE
    assert sorted(o.to for o in out) == [3, 4]


def test_a_registered_leader_answers_a_lower_coordinator_with_its_own() -> None:
    node = Node(4, [1, 2, 3, 4], TIMINGS)
    node.start(0.0)
    node.on_registered(5, 0.01)
    out = node.on_message(Message(Kind.COORDINATOR, 1, leader=1, epoch=FORGED_EPOCH), 0.1)
    assert node.is_working_leader and node.epoch == 5
    assert [(o.to, o.message.kind, o.message.epoch) for o in out] == [(1, Kind.COORDINATOR, 5)]


def test_an_answer_with_the_wrong_nonce_is_ignored() -> None:
    node = Node(1, [1, 2], TIMINGS)
    out = node.start(0.0)
    election_nonce = out[0].message.nonce
    node.on_message(Message(Kind.ANSWER, 2, nonce=election_nonce + 99), 0.01)
    assert node.on_tick(TIMINGS.election_timeout) == []
    assert node.role == LEADER  # the bogus ANSWER did not hold it back


def test_a_stale_heartbeat_does_not_keep_a_follower() -> None:
    node = Node(2, [1, 2, 3], TIMINGS)
    node.start(0.0)
    node.on_registered(7, 0.01)
    node.on_message(Message(Kind.COORDINATOR, 3, leader=3, epoch=8), 0.1)
    now = 0.1
    while now < 0.1 + TIMINGS.leader_silence:  # a paused old reign's heartbeats
        now += TIMINGS.heartbeat / 2
        node.on_message(Message(Kind.COORDINATOR, 3, leader=3, epoch=5), now)
        node.on_tick(now)
    assert node.role == CANDIDATE  # leader declared silent


def test_election_from_a_lower_id_is_answered_and_taken_over() -> None:
    node = Node(3, [1, 2, 3, 4], TIMINGS)
    node.start(0.0)
    node.on_message(Message(Kind.COORDINATOR, 4, leader=4, epoch=1), 0.01)
    out = node.on_message(Message(Kind.ELECTION, 1, nonce=42), 0.02)
    kinds = [(o.to, o.message.kind, o.message.nonce) for o in out]
    assert (1, Kind.ANSWER, 42) in kinds
    assert (4, Kind.ELECTION) in [(o.to, o.message.kind) for o in out]
    assert node.role == CANDIDATE


def test_coordinator_from_a_lower_id_is_bullied() -> None:
    node = Node(4, [1, 2, 3, 4], TIMINGS)
    node.start(0.0)
    node.on_registered(1, 0.01)
    node.on_fenced(0.5, "STALE_EPOCH")
    node.on_message(Message(Kind.COORDINATOR, 2, leader=2, epoch=2), 0.6)
    assert node.role == LEADER and node.needs_registration  # no higher id: it wins at once


def test_a_leader_cut_off_from_the_queue_steps_down(board4: Board) -> None:
    board4.start_all()
    board4.run_until(lambda: board4.settled_on(4), limit=1.0)
    board4.queue_cut.add(4)
    board4.queue.down_since = board4.now
    board4.run_until(lambda: not board4.nodes[4].is_working_leader, limit=1.5)
    assert any(s.step == "stepped-down" and "queue" in s.detail for s in board4.nodes[4].steps)
    # 4 abstains, so a replica that reaches the queue takes over.
    board4.run_until(lambda: board4.settled_on(3), limit=3.0)
    assert board4.nodes[4].abstaining
    board4.queue_cut.clear()  # the queue answers 4 again: it stands and wins
    board4.run_until(lambda: board4.settled_on(4), limit=1.0)


def test_a_lower_leader_across_a_split_cannot_steal_the_queue(board4: Board) -> None:
    board4.start_all()
    board4.run_until(lambda: board4.settled_on(4), limit=1.0)
    for i in (1, 2, 3):
        board4.cut.add(frozenset((i, 4)))  # 4 still reaches the queue and works
    board4.run(3.0)
    assert board4.holds_queue(4)
    assert board4.queue.leader == 4
    assert any(s.step == "stepped-down" for s in board4.nodes[3].steps)  # LEADER_ALIVE
    assert board4.double_leadership == 0


FAULT = st.tuples(
    st.sampled_from(["crash", "restart", "pause", "resume", "lossy", "clean"]),
    st.integers(min_value=1, max_value=5),
    st.sampled_from([0.05, 0.2, 0.6, 1.0]),
)


@settings(max_examples=60, deadline=None)
@given(faults=st.lists(FAULT, max_size=12), seed=st.integers(min_value=0, max_value=1000))
def test_any_fault_schedule_heals_to_the_highest_id(
    faults: list[tuple[str, int, float]], seed: int
) -> None:
    """Crashes, restarts, pauses and lossy links in any order: at no moment do
    two replicas hold the queue's epoch, and once healed the highest id leads."""
    board = Board([1, 2, 3, 4, 5], seed=seed)
    board.start_all()
    for action, node, wait in faults:
        if action == "crash":
            board.crash(node)
        elif action == "restart" and node in board.down:
            board.start(node)
        elif action == "pause" and node not in board.down:
            board.paused.add(node)
        elif action == "resume":
            board.paused.discard(node)
        elif action == "lossy":
            board.lossy(0.3)
        elif action == "clean":
            board.drop = lambda o: False
        board.run(wait)
    board.drop = lambda o: False
    board.paused.clear()
    for node in sorted(board.down):
        board.start(node)
    board.run_until(lambda: board.settled_on(5), limit=4.0)
    assert board.double_leadership == 0
    epochs = [e for e, _ in board.queue.grants]
    assert epochs == sorted(set(epochs))  # every epoch granted once, increasing


def test_a_grant_older_than_my_last_one_is_asked_for_again() -> None:
    node = Node(4, [1, 2, 3, 4], TIMINGS)
    node.start(0.0)  # highest id: wins at once, registration in flight
    node.on_registered(6, 0.01)
    node.on_fenced(0.5, "STALE_EPOCH")
    node.on_tick(0.5 + TIMINGS.failure_timeout)  # leaderless: stands again and wins
    assert node.needs_registration
    # A lower replica's claim while registering changes neither role nor epoch.
    node.on_message(Message(Kind.COORDINATOR, 2, leader=2, epoch=9), 1.1)
    assert node.role == LEADER and node.epoch == 6
    assert node.on_registered(5, 1.2) == []  # older than my own grant: stale
    assert node.needs_registration and not node.is_working_leader
    out = node.on_registered(7, 1.3)
    assert node.is_working_leader and node.epoch == 7
    assert {o.to for o in out} == {1, 2, 3}


FORGERY = st.tuples(
    st.sampled_from(list(Kind)),
    st.integers(min_value=1, max_value=4),  # claimed sender
    st.integers(min_value=1, max_value=4),  # victim
    st.sampled_from([0, 1, 2**32, 2**63, 2**64 - 1]),  # epoch
    st.integers(min_value=0, max_value=5),  # nonce
)


@settings(max_examples=40, deadline=None)
@given(forgeries=st.lists(FORGERY, min_size=1, max_size=10))
def test_forged_messages_of_any_kind_heal_to_the_highest_id_with_real_epochs(
    forgeries: list[tuple[Kind, int, int, int, int]],
) -> None:
    board = Board([1, 2, 3, 4])
    board.start_all()
    board.run_until(lambda: board.settled_on(4), limit=1.0)
    for kind, sender, victim, epoch, nonce in forgeries:
        forged = Message(kind, sender, leader=sender, epoch=epoch, nonce=nonce)
        board.send(sender, [Outgoing(victim, forged)])
        board.run(0.05)
    board.run_until(lambda: board.settled_on(4), limit=3.0)
    grants = [e for e, _ in board.queue.grants]
    # Every epoch anyone holds came from the queue, and forgeries cost at most
    # one re-registration each (no storm).
    assert all(n.epoch in (0, *grants) for n in board.nodes.values())
    assert len(grants) <= 1 + len(forgeries)
    assert board.double_leadership == 0
