"""The JSON shapes: orders, and the cluster view pinned key by key (the cluster page reads them)."""

from __future__ import annotations

from bookstore.orchestrator.probe import (
    ClusterState,
    ElectionStep,
    ExecutorState,
    QueuedEntry,
    QueueState,
    cluster_unknown,
    leader_of,
)
from bookstore.orchestrator.responses import ServiceRow, cluster_json, order_json, order_line_json
from bookstore.orchestrator.store import APPROVED, OrderItem, OrderRecord
from bookstore.settings import Settings


def test_nothing_answering_gives_every_key_unknown() -> None:
    body = cluster_json([], cluster_unknown(Settings()))
    assert body["queue"] == {
        "depth": None,
        "next": [],
        "epoch": None,
        "leaderId": None,
        "leased": None,
        "executed": None,
        "pid": None,
        "healthy": False,
    }
    assert body["executors"][0] == {
        "replicaId": 1,
        "address": "127.0.0.1:50055",
        "pid": None,
        "alive": False,
        "role": None,
        "leaderId": None,
        "epoch": None,
        "executed": None,
    }
    assert [e["replicaId"] for e in body["executors"]] == [1, 2, 3, 4]
    assert body["leader"] is None and body["elections"] == []
    assert list(body) == ["services", "queue", "executors", "leader", "elections"]


def test_a_live_cluster_in_json() -> None:
    queue = QueueState(3, (QueuedEntry("o1", 5, 7),), 2, 4, 1, 9, 20, True)
    executors = (
        ExecutorState(3, "h:3", 33, True, "leader", 3, 1, 0),  # deposed, still claiming
        ExecutorState(4, "h:4", 44, True, "leader", 4, 2, 9),
    )
    step = ElectionStep("2026-01-01T00:00:00.000Z", 4, "won", "no answer", 2)
    state = ClusterState(queue, executors, leader_of(queue, executors), (step,))
    row = ServiceRow("order-executor", "h:4", 44, True, replica_id=4, metrics="http://h:5/metrics")
    body = cluster_json([row], state)
    assert body["services"] == [
        {
            "name": "order-executor",
            "replicaId": 4,
            "address": "h:4",
            "pid": 44,
            "healthy": True,
            "cachedOrders": None,
            "metrics": "http://h:5/metrics",
        }
    ]
    assert body["queue"]["next"] == [{"orderId": "o1", "books": 5, "sequence": 7}]
    assert body["leader"] == {"replicaId": 4, "epoch": 2}
    assert body["elections"] == [
        {
            "at": "2026-01-01T00:00:00.000Z",
            "replicaId": 4,
            "step": "won",
            "detail": "no answer",
            "epoch": 2,
        }
    ]


def test_record_json_counts_books_and_formats_times() -> None:
    record = OrderRecord("o0", APPROVED, None, 1_700_000_000.0, (OrderItem("b001", "T", 2),))
    assert order_line_json(record)["books"] == 2
    assert order_json(record)["createdAt"] == "2023-11-14T22:13:20.000Z"
