"""Every JSON body of the cluster view: GET /api/cluster, an order's replication and
two-phase-commit steps. The keys and their order are the HTTP API (README's "HTTP
API"); the cluster page and the course page read them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bookstore.cluster_view.state import (
    ClusterState,
    CoordinatedStep,
    ElectionStep,
    ExecutorState,
    InDoubt,
    PaymentState,
    QueueState,
    ReplicaState,
    Replication,
)
from bookstore.orchestrator.admission import Admission

JSON = dict[str, Any]


def replication_json(order_id: str, replication: Replication) -> JSON:
    """The GET /orders/{id}/replication body: each replica's steps, in log order."""
    return {
        "orderId": order_id,
        "answered": list(replication.answered),
        "steps": [
            {
                "replicaId": s.replica_id,
                "kind": s.kind,
                "index": s.index,
                "view": s.view,
                "op": s.op,
                "peer": s.peer or None,
            }
            for s in replication.steps
        ],
    }


def commitment_json(order_id: str, steps: tuple[CoordinatedStep, ...]) -> JSON:
    """The GET /orders/{id}/commitment body: the messages in time order."""
    return {
        "orderId": order_id,
        "steps": [
            {
                "at": c.step.at,
                "coordinator": c.replica_id,
                "kind": c.step.kind,
                "from": c.step.sender,
                "to": c.step.receiver,
                "detail": c.step.detail,
                "epoch": c.step.epoch,
            }
            for c in steps
        ],
    }


@dataclass(frozen=True)
class ServiceRow:
    """One service of GET /api/cluster's "services"."""

    name: str
    address: str | None
    pid: int | None
    healthy: bool
    replica_id: int | None = None
    cached_orders: int | None = None
    metrics: str | None = None  # where its Prometheus metrics are served (None: off)

    def to_json(self) -> JSON:
        return {
            "name": self.name,
            "replicaId": self.replica_id,
            "address": self.address,
            "pid": self.pid,
            "healthy": self.healthy,
            "cachedOrders": self.cached_orders,
            "metrics": self.metrics,
        }


def queue_json(queue: QueueState) -> JSON:
    return {
        "depth": queue.depth,
        "next": [
            {"orderId": n.order_id, "books": n.books, "sequence": n.sequence} for n in queue.next
        ],
        "epoch": queue.epoch,
        "leaderId": queue.leader_id,
        "leased": queue.leased,
        "executed": queue.executed,
        "pid": queue.pid,
        "healthy": queue.healthy,
    }


def executor_json(executor: ExecutorState) -> JSON:
    return {
        "replicaId": executor.replica_id,
        "address": executor.address,
        "pid": executor.pid,
        "alive": executor.alive,
        "role": executor.role,
        "leaderId": executor.leader_id,
        "epoch": executor.epoch,
        "executed": executor.executed,
    }


def election_json(step: ElectionStep) -> JSON:
    return {
        "at": step.at,
        "replicaId": step.replica_id,
        "step": step.step,
        "detail": step.detail,
        "epoch": step.epoch,
    }


def replica_json(replica: ReplicaState) -> JSON:
    return {
        "replicaId": replica.replica_id,
        "address": replica.address,
        "pid": replica.pid,
        "alive": replica.alive,
        "role": replica.role,
        "view": replica.view,
        "primaryId": replica.primary_id,
        "commitIndex": replica.commit_index,
        "appliedIndex": replica.applied_index,
        "lastIndex": replica.last_index,
        "digest": replica.digest,
        "caughtUp": replica.caught_up,
        "maxEpoch": replica.max_epoch,
    }


def database_json(replicas: tuple[ReplicaState, ...]) -> JSON:
    """The replicas, the primary of the highest view, and whether every replica that
    answered holds the same stock (same applied position and digest)."""
    alive = [r for r in replicas if r.alive]
    primaries = sorted(
        (r for r in alive if r.role == "primary"), key=lambda r: r.view or 0, reverse=True
    )
    return {
        "replicas": [replica_json(r) for r in replicas],
        "primary": None
        if not primaries
        else {"replicaId": primaries[0].replica_id, "view": primaries[0].view},
        "converged": bool(alive) and len({(r.applied_index, r.digest) for r in alive}) == 1,
    }


def payment_service_json(payment: PaymentState | None) -> JSON | None:
    if payment is None:
        return None
    return {
        "address": payment.address,
        "pid": payment.pid,
        "healthy": payment.healthy,
        "capturedCents": payment.captured_cents,
        "currency": payment.currency,
        "prepared": payment.prepared,
        "committed": payment.committed,
        "aborted": payment.aborted,
        "epoch": payment.epoch,
    }


def in_doubt_json(txn: InDoubt) -> JSON:
    return {
        "txnId": txn.txn_id,
        "where": txn.where,
        "state": txn.state,
        "epoch": txn.epoch,
        "reason": txn.reason,
        "since": txn.since,
    }


def admission_json(admission: Admission, now: float) -> JSON:
    """GET /api/cluster's "admission": checkouts in flight and waiting for a slot."""
    return {
        "inFlight": admission.in_flight,
        "capacity": admission.capacity,
        "waiting": admission.waiting,
        "overloaded": admission.standing(now),
        "maxWaitMs": round(admission.max_wait_s * 1000),
    }


def cluster_json(services: list[ServiceRow], state: ClusterState) -> JSON:
    """The GET /api/cluster body."""
    leader = state.leader
    return {
        "services": [s.to_json() for s in services],
        "queue": queue_json(state.queue),
        "executors": [executor_json(e) for e in state.executors],
        "leader": None
        if leader is None
        else {"replicaId": leader.replica_id, "epoch": leader.epoch},
        "elections": [election_json(s) for s in state.elections],
        "database": database_json(state.replicas),
        "payment": payment_service_json(state.payment),
        "inDoubt": [in_doubt_json(t) for t in state.in_doubt],
    }
