"""The cluster view's routes on the orchestrator's app: every service, an order's
replication and two-phase-commit steps."""

from __future__ import annotations

import httpx
import pytest
from commitment_steps import COMMITTED
from orchestrator_fakes import UNAVAILABLE, FakeCluster, FakePipeline

from bookstore.cluster_view import routes


async def test_an_orders_replication_steps_in_log_order(
    client: httpx.AsyncClient,
) -> None:
    body = (await client.get("/orders/o-replicated/replication")).json()
    assert body["orderId"] == "o-replicated" and body["answered"] == [1, 2, 3]
    assert [(s["replicaId"], s["kind"], s["peer"]) for s in body["steps"]] == [
        (2, "appended", None),
        (1, "stored", None),
        (2, "acked", 1),
        (2, "applied", None),
    ]
    assert body["steps"][0] == {
        "replicaId": 2,
        "kind": "appended",
        "index": 7,
        "view": 3,
        "op": "reserve",
        "peer": None,
    }
    unknown = (await client.get("/orders/o-unseen/replication")).json()
    assert unknown["steps"] == []
    too_long = await client.get("/orders/" + "x" * 300 + "/replication")
    assert too_long.status_code == 400 and too_long.json()["error"]["code"] == "BAD_ORDER_ID"


async def test_an_orders_commitment_messages_in_time_order(client: httpx.AsyncClient) -> None:
    body = (await client.get("/orders/o-committed/commitment")).json()
    assert body["orderId"] == "o-committed"
    assert [(s["kind"], s["from"], s["to"], s["detail"]) for s in body["steps"]] == [*COMMITTED]
    assert body["steps"][0] == {
        "at": "2026-01-01T00:00:00.000Z",
        "coordinator": 4,
        "kind": "prepare",
        "from": "coordinator",
        "to": "books-database",
        "detail": "",
        "epoch": 2,
    }
    assert (await client.get("/orders/o-other/commitment")).json()["steps"] == []


async def test_cluster_lists_every_service(client: httpx.AsyncClient) -> None:
    cluster = (await client.get("/api/cluster")).json()
    names = [s["name"] for s in cluster["services"]]
    assert names[:4] == [
        "orchestrator",
        "transaction-verification",
        "fraud-detection",
        "suggestions",
    ]
    assert "order-queue" in names and "order-executor" in names
    orchestrator = cluster["services"][0]
    assert isinstance(orchestrator["pid"], int) and orchestrator["healthy"] is True
    suggestions = cluster["services"][3]
    assert suggestions["healthy"] is False and suggestions["cachedOrders"] is None
    assert orchestrator["metrics"].endswith(":8081/metrics")
    # A gRPC service's metrics port: its configured gRPC port + the offset (1000).
    assert cluster["services"][1]["metrics"] == "http://127.0.0.1:51052/metrics"
    assert all(s["metrics"].endswith("/metrics") for s in cluster["services"])
    assert cluster["leader"] == {"replicaId": 1, "epoch": 2}
    assert cluster["queue"]["depth"] == 0
    assert set(cluster) >= {"services", "executors", "leader", "queue", "elections"}


async def test_cluster_with_everything_down_is_bounded_and_not_an_error(
    client: httpx.AsyncClient,
    pipeline: FakePipeline,
    cluster: FakeCluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(routes, "CLUSTER_TIMEOUT_S", 0.2)
    pipeline.stats_error = UNAVAILABLE
    cluster.hangs = True
    response = await client.get("/api/cluster")
    assert response.status_code == 200
    cluster = response.json()
    assert [s["healthy"] for s in cluster["services"][1:]] == [False] * (
        len(cluster["services"]) - 1
    )
    assert cluster["leader"] is None
    assert len(cluster["executors"]) == 4
