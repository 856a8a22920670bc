"""Each replica's record of what it did with an order's operations (the cluster view's
replication diagram): appended and acked on the primary, stored on the backups,
applied everywhere; bounded per order and in the number of orders."""

from __future__ import annotations

from replication_sim import Cluster

from bookstore.books_database.messages import Entry
from bookstore.books_database.replication import PRIMARY
from bookstore.books_database.stock import NOOP_OP, RESERVE, Op
from bookstore.books_database.trail import ACK_WINDOW, EVENTS_PER_TXN, Trail


def test_every_replica_records_its_part_in_an_orders_reservation() -> None:
    cluster = Cluster(seed=5, stock={"b1": 50, "b2": 50})
    cluster.run(2.0)
    cluster.run(3.0, clients=2)
    cluster.run(1.0)  # no new writes: every acknowledgement arrives
    nodes = {i: n for i, n in cluster.nodes.items() if n is not None}
    (primary,) = [i for i, n in nodes.items() if n.role == PRIMARY]
    index, entry = next((i, e) for i, e in sorted(cluster.committed.items()) if e.op.txn_id)
    backups = [i for i in nodes if i != primary]

    def seen(replica: int) -> set[tuple[str, int, int]]:
        return {(e.kind, e.index, e.peer) for e in cluster.trails[replica].events(entry.op.txn_id)}

    assert seen(primary) >= {
        ("appended", index, 0),
        *(("acked", index, b) for b in backups),
        ("applied", index, 0),
    }
    for b in backups:
        assert seen(b) >= {("stored", index, 0), ("applied", index, 0)}
        assert not any(kind in ("appended", "acked") for kind, _, _ in seen(b))
    events = cluster.trails[primary].events(entry.op.txn_id)
    assert {(e.replica_id, e.op, e.view) for e in events if e.index == index} == {
        (primary, entry.op.kind, entry.view)
    }


def test_a_trail_is_bounded_and_skips_operations_without_an_order() -> None:
    trail = Trail(1, kept=2)
    order = Entry(3, Op(RESERVE, "r", "o1", 1, (("b1", 1),)))
    for index in range(1, EVENTS_PER_TXN + 10):
        trail.appended(index, order)
    trail.appended(99, Entry(3, NOOP_OP))
    assert len(trail.events("o1")) == EVENTS_PER_TXN
    assert trail.events("") == ()
    for txn in ("o2", "o3"):
        trail.applied(1, Entry(3, Op(RESERVE, "r", txn, 1, (("b1", 1),))))
    assert trail.events("o1") == ()  # the oldest order forgotten
    assert [e.kind for e in trail.events("o3")] == ["applied"]


def test_a_jump_of_a_backups_match_index_records_only_the_newest_acks() -> None:
    trail = Trail(1)
    log = [Entry(1, Op(RESERVE, f"r{i}", f"o{i}", 1, (("b1", 1),))) for i in range(1, 3001)]
    trail.acked(2, 0, len(log), lambda index: log[index - 1])
    assert trail.events("o1") == ()
    assert [(e.kind, e.index, e.peer) for e in trail.events("o3000")] == [("acked", 3000, 2)]
    assert len(trail.events(f"o{3000 - ACK_WINDOW + 1}")) == 1
    assert trail.events(f"o{3000 - ACK_WINDOW}") == ()


def test_the_orders_of_one_batch_each_keep_their_own_trail() -> None:
    cluster = Cluster(seed=9, stock={"b1": 50})
    cluster.run(2.0)
    (primary,) = [i for i, n in cluster.nodes.items() if n is not None and n.role == PRIMARY]
    node = cluster.nodes[primary]
    assert node is not None
    orders = ("o1", "o2", "o3")
    ops = [(900 + n, Op(RESERVE, f"r-{o}", o, 1, (("b1", 1),))) for n, o in enumerate(orders)]
    first = node.last_index + 1
    cluster._handle(primary, node.submit_many(ops, cluster.now))
    cluster.run(1.0)
    for offset, order in enumerate(orders):
        for replica, n in cluster.nodes.items():
            assert n is not None
            events = {(e.kind, e.index, e.op) for e in cluster.trails[replica].events(order)}
            mine = {"appended", "acked", "applied"} if replica == primary else {"stored", "applied"}
            assert {kind for kind, _, _ in events} == mine
            assert {index for _, index, _ in events} == {first + offset}
