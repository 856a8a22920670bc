"""The cluster view's JSON, pinned key by key (the cluster page reads them)."""

from __future__ import annotations

from bookstore.cluster_view.responses import ServiceRow, cluster_json, database_json
from bookstore.cluster_view.state import (
    ClusterState,
    ElectionStep,
    ExecutorState,
    InDoubt,
    PaymentState,
    QueuedEntry,
    QueueState,
    ReplicaState,
    cluster_unknown,
    leader_of,
)
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
    assert body["database"] == {
        "replicas": [
            {
                "replicaId": i,
                "address": f"127.0.0.1:{50058 + i}",
                "pid": None,
                "alive": False,
                "role": None,
                "view": None,
                "primaryId": None,
                "commitIndex": None,
                "appliedIndex": None,
                "lastIndex": None,
                "digest": None,
                "caughtUp": None,
                "maxEpoch": None,
            }
            for i in (1, 2, 3)
        ],
        "primary": None,
        "converged": False,
    }
    assert body["payment"] == {
        "address": "127.0.0.1:50062",
        "pid": None,
        "healthy": False,
        "capturedCents": None,
        "currency": None,
        "prepared": None,
        "committed": None,
        "aborted": None,
        "epoch": None,
    }
    assert body["inDoubt"] == []
    assert list(body) == [
        "services",
        "queue",
        "executors",
        "leader",
        "elections",
        "database",
        "payment",
        "inDoubt",
    ]


def _replica(rid: int, role: str, view: int, applied: int, digest: str) -> ReplicaState:
    return ReplicaState(
        rid, f"h:{rid}", 100 + rid, True, role, view, 1, applied, applied, applied, digest, True, 2
    )


def test_the_database_in_json_names_the_primary_of_the_highest_view_and_convergence() -> None:
    replicas = (
        _replica(1, "primary", 3, 40, "aa"),  # deposed, still claiming
        _replica(2, "primary", 4, 41, "bb"),
        ReplicaState(3, "h:3"),  # not answering: left out of convergence
    )
    body = database_json(replicas)
    assert body["primary"] == {"replicaId": 2, "view": 4}
    assert body["converged"] is False
    assert body["replicas"][1]["appliedIndex"] == 41 and body["replicas"][1]["digest"] == "bb"
    same = (_replica(1, "primary", 4, 41, "bb"), _replica(2, "backup", 4, 41, "bb"))
    assert database_json(same)["converged"] is True


def test_in_doubt_transactions_and_payment_in_json() -> None:
    payment = PaymentState("p:1", 9, True, 12345, "EUR", 1, 7, 2, 3)
    logged = InDoubt("o1", "decision-log", "commit", 3, "", "2026-01-01T00:00:00.000Z")
    prepared = InDoubt("o2", "payment", "prepared", 3, "", "2026-01-01T00:00:01.000Z")
    state = ClusterState(QueueState(), (), None, (), (), payment, (logged, prepared))
    body = cluster_json([], state)
    assert body["payment"]["capturedCents"] == 12345 and body["payment"]["pid"] == 9
    assert body["inDoubt"] == [
        {
            "txnId": "o1",
            "where": "decision-log",
            "state": "commit",
            "epoch": 3,
            "reason": "",
            "since": "2026-01-01T00:00:00.000Z",
        },
        {
            "txnId": "o2",
            "where": "payment",
            "state": "prepared",
            "epoch": 3,
            "reason": "",
            "since": "2026-01-01T00:00:01.000Z",
        },
    ]


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
