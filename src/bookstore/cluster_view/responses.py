"""Every JSON body of the cluster view: GET /api/cluster, an order's replication and
two-phase-commit steps. The keys and their order are the HTTP API (README's "HTTP
API"); the cluster page and the course page read them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

from bookstore.cluster_view.state import ClusterState, CoordinatedStep, ReplicaState, Replication
from bookstore.orchestrator.admission import Admission

JSON = dict[str, Any]


def camel_json(value: Any) -> Any:
    """A dataclass as JSON: its fields in order under their camelCase names
    (`replica_id` -> "replicaId"), nested dataclasses and tuples too."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {_camel(f.name): camel_json(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple):
        return [camel_json(v) for v in value]
    return value


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(word.capitalize() for word in rest)


def replication_json(order_id: str, replication: Replication) -> JSON:
    """The GET /orders/{id}/replication body: each replica's steps, in log order."""
    return {
        "orderId": order_id,
        "answered": list(replication.answered),
        "steps": [{**camel_json(s), "peer": s.peer or None} for s in replication.steps],
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


def database_json(replicas: tuple[ReplicaState, ...]) -> JSON:
    """The replicas, the primary of the highest view, and whether every replica that
    answered holds the same stock (same applied position and digest)."""
    alive = [r for r in replicas if r.alive]
    primaries = sorted(
        (r for r in alive if r.role == "primary"), key=lambda r: r.view or 0, reverse=True
    )
    return {
        "replicas": camel_json(replicas),
        "primary": None
        if not primaries
        else {"replicaId": primaries[0].replica_id, "view": primaries[0].view},
        "converged": bool(alive) and len({(r.applied_index, r.digest) for r in alive}) == 1,
    }


def admission_json(admission: Admission, now: float) -> JSON:
    """GET /api/cluster's "admission": checkouts in flight and waiting for a slot."""
    return {
        "inFlight": admission.in_flight,
        "capacity": admission.slots(now),
        "maxInFlight": admission.capacity,
        "waiting": admission.waiting,
        "overloaded": admission.standing(now),
        "maxWaitMs": round(admission.max_wait_s * 1000),
        "unqueuedMs": round(admission.unqueued_s * 1000),
    }


def cluster_json(services: list[ServiceRow], state: ClusterState) -> JSON:
    """The GET /api/cluster body."""
    return {
        "services": camel_json(tuple(services)),
        "queue": camel_json(state.queue),
        "executors": camel_json(state.executors),
        "leader": camel_json(state.leader),
        "elections": camel_json(state.elections),
        "database": database_json(state.replicas),
        "payment": camel_json(state.payment),
        "inDoubt": camel_json(state.in_doubt),
    }
