"""The replication protocol as a pure state machine, on fake time and a
simulated network. Every run checks, as it goes: at most one primary per
view, committed entries never lost or changed, stock never negative; and at
its end: the replicas converge and every book's history is linearizable."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from replication_sim import COMPACTION, TIMINGS, Cluster

from bookstore.books_database import replication
from bookstore.books_database.linearizability import is_linearizable
from bookstore.books_database.messages import Append, AppendReply, Entry, RequestVote, Vote
from bookstore.books_database.replication import PRIMARY, SNAPSHOT_ROWS, Replica
from bookstore.books_database.stock import BookRow, Op, StockMachine

STOCK = {"b1": 4, "b2": 2}


def settle(cluster: Cluster) -> int:
    """Run until one primary has committed its no-op; return it."""
    for _ in range(100):
        cluster.run(0.1)
        leaders = [n for n in cluster.live() if n.role == PRIMARY and n.caught_up]
        if leaders and cluster.converged():
            return leaders[0].my_id
    raise AssertionError("no primary emerged")


def check_histories(cluster: Cluster) -> None:
    cluster.close_history()
    initial = cluster.initial_states()
    for book, history in cluster.history.items():
        assert is_linearizable(history, initial[book]), (book, history)


def test_a_primary_is_elected_and_writes_reach_every_replica() -> None:
    cluster = Cluster(seed=1, stock=STOCK)
    settle(cluster)
    cluster.run(3.0, clients=3)
    settle(cluster)
    check_histories(cluster)
    assert cluster.acknowledged_writes > 0
    digests = {n.machine.digest() for n in cluster.nodes.values() if n is not None}
    assert len(digests) == 1


def test_a_new_primary_takes_over_and_keeps_committed_writes() -> None:
    cluster = Cluster(seed=2, stock=STOCK)
    old = settle(cluster)
    cluster.run(1.0, clients=3)
    committed = dict(cluster.committed)
    cluster.crash(old)
    new = settle(cluster)
    assert new != old
    node = cluster.nodes[new]
    assert node is not None
    for index, entry in committed.items():
        assert node.log.get(index) in (None, entry)  # None: compacted
    cluster.run(1.0, clients=3)
    cluster.restart(old)
    settle(cluster)
    check_histories(cluster)


def test_an_isolated_primary_acknowledges_nothing_and_rejoins() -> None:
    cluster = Cluster(seed=3, stock=STOCK)
    old = settle(cluster)
    cluster.isolate(old)
    node = cluster.nodes[old]
    assert node is not None
    commit_before = node.commit
    out = node.submit_many([(999, Op("set_stock", "isolated", items=(("b1", 1),)))], cluster.now)
    cluster.run(2.0)
    assert node.commit == commit_before  # nothing committed on the minority side
    assert node.role != PRIMARY  # it stepped down: no majority heard
    assert not out.answers
    cluster.heal()
    settle(cluster)
    assert "isolated" not in node.machine.answers  # its uncommitted entry was replaced
    assert node.machine.books["b1"].stock == STOCK["b1"]


def test_a_replica_refuses_a_lower_view_and_answers_with_its_own() -> None:
    machine = StockMachine({"b1": BookRow("B", 3)})
    replica = Replica(1, [1, 2, 3], machine, view=5)
    stale = Append(4, 2, 0, 0, (), 0, 7)
    out = replica.on_message(stale, 0.0)
    assert [o.message for o in out.messages] == [AppendReply(5, 1, False, 0, 7)]
    assert replica.leader == 0
    vote = replica.on_message(RequestVote(3, 2, 9, 9), 0.0)
    assert [o.message for o in vote.messages] == [Vote(5, 1, False)]


def test_one_vote_per_view_and_only_for_an_up_to_date_log() -> None:
    machine = StockMachine({"b1": BookRow("B", 3)})
    replica = Replica(1, [1, 2, 3], machine, view=2)
    behind = replica.on_message(RequestVote(3, 2, 0, 0), 0.0)
    assert behind.messages[0].message == Vote(3, 1, True)  # empty logs: equal
    again = replica.on_message(RequestVote(3, 3, 0, 0), 0.0)
    assert again.messages[0].message == Vote(3, 1, False)  # already voted in view 3
    assert behind.hard_state == (3, 2)


def test_a_message_from_a_replica_that_is_not_a_member_counts_for_nothing() -> None:
    machine = StockMachine({"b1": BookRow("B", 3)})
    replica = Replica(1, [1, 2, 3], machine, view=2)
    out = replica.on_message(Append(9, 7, 0, 0, (), 0, 1), 0.0)
    assert (replica.view, replica.leader, out.messages) == (2, 0, [])


def test_a_deposed_primary_steps_down_on_a_higher_view() -> None:
    cluster = Cluster(seed=4, stock=STOCK)
    old = settle(cluster)
    node = cluster.nodes[old]
    assert node is not None
    out = node.on_message(AppendReply(node.view + 1, node.peers[0], False, 0, 0), cluster.now)
    assert node.role != PRIMARY and out.hard_state == (node.view, 0)


def test_a_paused_primary_that_wakes_up_serves_no_stale_read() -> None:
    cluster = Cluster(seed=6, stock=STOCK)
    old = settle(cluster)
    cluster.pause(old)
    new = settle(cluster)
    node, successor = cluster.nodes[old], cluster.nodes[new]
    assert node is not None and successor is not None and new != old
    cluster._handle(
        new, successor.submit_many([(1, Op("set_stock", "w", items=(("b1", 1),)))], cluster.now)
    )
    cluster.run(0.2)
    assert successor.machine.answers["w"].ok
    assert node.role == PRIMARY  # it still believes it leads
    read = node.read(2, ("b1",), cluster.now)
    write = node.submit_many([(3, Op("set_stock", "late", items=(("b1", 3),)))], cluster.now)
    assert not read.answers and not write.answers  # both wait for a majority
    cluster.resume(old)
    settle(cluster)
    mine = {a.ticket: a.result.code for i, a in cluster.answers_seen if i == old}
    assert mine == {2: "NOT_PRIMARY", 3: "UNKNOWN"}  # never the stale stock
    assert node.machine.books["b1"].stock == 1 and "late" not in node.machine.answers


def test_an_advisory_read_is_the_primarys_applied_stock_at_once() -> None:
    cluster = Cluster(seed=7, stock=STOCK)
    primary = cluster.nodes[settle(cluster)]
    assert primary is not None
    answer = primary.read_applied(("b1", "b2"))
    assert (answer.result.ok, answer.stock) == (True, (("b1", 4, 4), ("b2", 2, 2)))
    assert primary.take_output().messages == []  # no round: nothing sent
    backup = next(n for n in cluster.live() if n.role != PRIMARY)
    assert backup.read_applied(("b1",)).result.code == "NOT_PRIMARY"
    assert primary.read_applied(("nope",)).result.code == "UNKNOWN_BOOK"


def test_a_deposed_primary_may_answer_an_advisory_read_with_stale_stock() -> None:
    """Why only advice may use it: a paused primary answers from what it applied."""
    cluster = Cluster(seed=6, stock=STOCK)
    old = settle(cluster)
    cluster.pause(old)
    successor = cluster.nodes[settle(cluster)]
    node = cluster.nodes[old]
    assert node is not None and successor is not None
    cluster._handle(
        successor.my_id,
        successor.submit_many([(1, Op("set_stock", "w", items=(("b1", 1),)))], cluster.now),
    )
    cluster.run(0.2)
    assert successor.read_applied(("b1",)).stock == (("b1", 1, 1),)
    assert node.read_applied(("b1",)).stock == (("b1", 4, 4),)  # stale, still "primary"


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    drop=st.sampled_from([0.0, 0.05, 0.2]),
    faults=st.lists(
        st.tuples(
            st.sampled_from(["crash", "restart", "isolate", "heal", "pause", "resume"]),
            st.integers(0, 3),  # 0: whichever replica is primary then
        ),
        max_size=6,
    ),
)
def test_random_faults_keep_the_stock_linearizable(
    seed: int, drop: float, faults: list[tuple[str, int]]
) -> None:
    cluster = Cluster(seed=seed, stock=STOCK, drop=drop)
    for fault, node in faults:
        cluster.run(0.8, clients=3)  # longer than an election
        if fault == "heal":
            cluster.heal()
        else:
            getattr(cluster, fault)(node or cluster.leader_hint or 1)
    cluster.run(0.4, clients=3)
    cluster.heal()
    cluster.drop = 0.0
    for node in cluster.ids:
        cluster.restart(node)
        cluster.resume(node)
    settle(cluster)
    check_histories(cluster)


def test_a_replica_cut_off_and_reconnected_does_not_depose_the_primary() -> None:
    cluster = Cluster(seed=7, stock=STOCK)
    primary = settle(cluster)
    node = cluster.nodes[primary]
    assert node is not None
    view = node.view
    backup = next(i for i in cluster.ids if i != primary)
    cluster.isolate(backup)
    cluster.run(3.0, clients=3)  # it times out again and again, asking in vain
    cluster.heal()
    cluster.run(1.0, clients=3)
    assert (node.role, node.view) == (PRIMARY, view)
    assert settle(cluster) == primary
    check_histories(cluster)


def test_a_replica_behind_in_views_but_ahead_in_log_still_gets_elected() -> None:
    # Replica 3 is down. Replica 1 saw view 5 but has an older log; replica 2 has the
    # newer log but saw only view 3. Only 2 can win, and it must learn view 5 first.
    entries = [Entry(1, Op("noop")), Entry(3, Op("noop"))]
    one = Replica(1, [1, 2, 3], StockMachine({}), view=5, log=entries[:1])
    two = Replica(2, [1, 2, 3], StockMachine({}), view=3, log=entries)
    replicas = {1: one, 2: two}
    now = 0.0
    while PRIMARY not in (one.role, two.role):
        now += 0.01
        assert now < 30, "no primary"
        outs = [r.on_tick(now) for r in replicas.values()]
        while outs:
            out = outs.pop()
            outs += [
                replicas[o.to].on_message(o.message, now) for o in out.messages if o.to in replicas
            ]
    assert two.role == PRIMARY and two.view > 5


def test_a_batch_of_writes_is_one_append_and_one_round_with_an_answer_each() -> None:
    cluster = Cluster(seed=8, stock=STOCK)
    leader = settle(cluster)
    node = cluster.nodes[leader]
    assert node is not None
    known = Op("set_stock", "known", items=(("b1", 4),))
    cluster._handle(leader, node.submit_many([(500, known)], cluster.now))
    cluster.run(0.5)
    writes = [
        (501, Op("reserve", "r1", "o1", 1, (("b1", 1),))),
        (502, Op("reserve", "r2", "o2", 1, (("nope", 1),))),  # refused before the log
        (503, known),  # a replay: its first answer, not appended again
        (504, Op("reserve", "r3", "o3", 1, (("b2", 9),))),  # not enough copies
        (505, Op("release", "x4", "o4", 1)),
    ]
    first = node.last_index + 1
    out = node.submit_many(writes, cluster.now)
    appended = [writes[0][1], writes[3][1], writes[4][1]]
    assert [(w.start, [e.op for e in w.entries]) for w in out.log_writes] == [(first, appended)]
    assert {a.ticket: a.result.code for a in out.answers} == {502: "UNKNOWN_BOOK", 503: "OK"}
    cluster._handle(leader, out)
    round_ = node.on_tick(cluster.now)  # the Append leaves while the entries are written
    sent = {o.to: o.message for o in round_.early()}
    assert set(sent) == set(node.peers)
    for message in sent.values():
        assert isinstance(message, Append) and [e.op for e in message.entries] == appended
    cluster._handle(leader, round_)
    cluster.run(0.5)
    answers = {a.ticket: a.result.code for i, a in cluster.answers_seen if i == leader}
    assert {t: answers[t] for t in (501, 504, 505)} == {
        501: "OK",
        504: "VOTED_NO",
        505: "OK",
    }
    assert cluster.converged()


def elect(replicas: dict[int, Replica]) -> tuple[Replica, float]:
    """Run `replicas` (writing at once, losing nothing) until replica 1 is primary."""
    now = 0.0
    while replicas[1].role != PRIMARY or not replicas[1].caught_up:
        now += 0.01
        assert now < 30, "no primary"
        outs = [r.on_tick(now) for r in replicas.values()]
        outs += [r.on_persisted(now) for r in replicas.values()]
        while outs:
            out = outs.pop()
            for o in out.early() + out.late():
                if o.to in replicas:
                    outs += [replicas[o.to].on_message(o.message, now)]
                    outs += [replicas[o.to].on_persisted(now)]
        if replicas[1].role != PRIMARY:
            for r in replicas.values():
                r._deadline = now + (0.001 if r.my_id == 1 else 10.0)  # let 1 call it
    return replicas[1], now


def test_the_primary_sends_before_its_write_and_counts_itself_only_once_written() -> None:
    replicas = {i: Replica(i, [1, 2, 3], StockMachine({"b1": BookRow("B", 3)})) for i in (1, 2)}
    primary, now = elect(replicas)
    write = Op("set_stock", "w1", items=(("b1", 1),))
    out = primary.submit_many([(7, write)], now).merge(primary.on_tick(now))
    (append,) = [o.message for o in out.early() if o.to == 2]  # leaves while it is written
    assert isinstance(append, Append) and [e.op for e in append.entries] == [write]
    assert out.log_writes and not out.answers
    backup = replicas[2].on_message(append, now)
    assert not backup.early()  # the backup acknowledges only after its own write
    (ack,) = [o.message for o in backup.late()]
    assert isinstance(ack, AppendReply) and ack.ok
    acked = primary.on_message(ack, now)
    assert not acked.answers  # one backup, and the primary's write not done: no majority
    done = primary.on_persisted(now)
    assert [(a.ticket, a.result.ok) for a in done.answers] == [(7, True)]


def test_two_backups_commit_without_the_primarys_own_write() -> None:
    replicas = {i: Replica(i, [1, 2, 3], StockMachine({"b1": BookRow("B", 3)})) for i in (1, 2, 3)}
    primary, now = elect(replicas)
    out = primary.submit_many([(7, Op("set_stock", "w1", items=(("b1", 1),)))], now)
    out.merge(primary.on_tick(now))
    answers = []
    for o in out.early():
        ack = replicas[o.to].on_message(o.message, now).late()[0].message
        answers += primary.on_message(ack, now).answers
    assert [a.ticket for a in answers] == [7]  # a majority holds it on disk


@pytest.mark.parametrize("rows", [SNAPSHOT_ROWS, 1])  # 1: the snapshot comes in many parts
def test_a_replica_down_while_the_log_was_compacted_catches_up_from_a_snapshot(
    rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replication, "SNAPSHOT_ROWS", rows)
    cluster = Cluster(seed=9, stock=STOCK)
    primary = settle(cluster)
    down = next(i for i in cluster.ids if i != primary)
    cluster.crash(down)
    cluster.run(3.0, clients=3)
    live = cluster.nodes[primary]
    assert live is not None and live.log.snap_index > cluster.disks[down].applied
    assert len(live.log.entries) < 3 * (COMPACTION.keep + COMPACTION.every)  # bounded
    cluster.restart(down)
    settle(cluster)
    node = cluster.nodes[down]
    assert node is not None and node.snapshots_installed >= 1
    assert node.machine.digest() == live.machine.digest()
    check_histories(cluster)


def test_a_killed_primary_is_replaced_before_any_election_timeout_when_its_connection_closes() -> (
    None
):
    cluster = Cluster(seed=2, stock=STOCK)
    old = settle(cluster)
    cluster.run(1.0, clients=3)
    cluster.crash(old)
    for node in cluster.live():  # a killed process's connections close at once
        cluster._handle(node.my_id, node.on_peer_lost(old, cluster.now))
    lost_at = cluster.now
    while not any(n.role == PRIMARY for n in cluster.live()):
        cluster.run(0.01)
    assert cluster.now - lost_at < TIMINGS.election_min
    settle(cluster)
    cluster.run(1.0, clients=3)
    check_histories(cluster)


def test_a_lost_connection_to_a_backup_changes_nothing() -> None:
    cluster = Cluster(seed=1, stock=STOCK)
    primary = settle(cluster)
    backups = [n for n in cluster.live() if n.my_id != primary]
    out = backups[0].on_peer_lost(backups[1].my_id, cluster.now)
    assert out.messages == [] and backups[0].leader == primary
