"""What the cluster view shows, as plain values: each service's status (the defaults say
it did not answer), the in-doubt transactions, an order's replication and two-phase
commit steps. `probe` fills them in; `responses` turns them into JSON."""

from __future__ import annotations

from dataclasses import dataclass

from bookstore.books_database.trail import TrailEvent
from bookstore.commitment.trace import CommitmentStep
from bookstore.settings import Settings


@dataclass(frozen=True)
class QueuedEntry:
    order_id: str
    books: int
    sequence: int


@dataclass(frozen=True)
class QueueState:
    """The queue's status; the defaults say it did not answer."""

    depth: int | None = None
    next: tuple[QueuedEntry, ...] = ()
    epoch: int | None = None
    leader_id: int | None = None
    leased: int | None = None
    executed: int | None = None
    pid: int | None = None
    healthy: bool = False


@dataclass(frozen=True)
class ExecutorState:
    """One executor's status; the defaults say it did not answer."""

    replica_id: int
    address: str
    pid: int | None = None
    alive: bool = False
    role: str | None = None
    leader_id: int | None = None
    epoch: int | None = None
    executed: int | None = None


@dataclass(frozen=True)
class ElectionStep:
    at: str  # RFC 3339
    replica_id: int
    step: str
    detail: str
    epoch: int


@dataclass(frozen=True)
class Leader:
    replica_id: int
    epoch: int | None


@dataclass(frozen=True)
class ReplicaState:
    """One books-database replica's status; the defaults say it did not answer."""

    replica_id: int
    address: str
    pid: int | None = None
    alive: bool = False
    role: str | None = None
    view: int | None = None
    primary_id: int | None = None  # the primary it follows
    commit_index: int | None = None
    applied_index: int | None = None
    last_index: int | None = None
    digest: str | None = None  # of the stock table: equal digests, same stock
    caught_up: bool | None = None
    max_epoch: int | None = None


@dataclass(frozen=True)
class PaymentState:
    """The payment service's status; the defaults say it did not answer."""

    address: str
    pid: int | None = None
    healthy: bool = False
    captured_cents: int | None = None
    currency: str | None = None
    prepared: int | None = None
    committed: int | None = None
    aborted: int | None = None
    epoch: int | None = None


@dataclass(frozen=True)
class InDoubt:
    """A transaction not finished everywhere: decided in the queue's log with its order
    not yet finished (where="decision-log"), or prepared at payment (where="payment")."""

    txn_id: str
    where: str
    state: str  # decision-log: "commit" | "abort"; payment: "prepared"
    epoch: int
    reason: str
    since: str  # RFC 3339: decided or last updated


@dataclass(frozen=True)
class ClusterState:
    queue: QueueState
    executors: tuple[ExecutorState, ...]
    leader: Leader | None
    elections: tuple[ElectionStep, ...]
    replicas: tuple[ReplicaState, ...] = ()
    payment: PaymentState | None = None
    in_doubt: tuple[InDoubt, ...] = ()


def cluster_unknown(settings: Settings) -> ClusterState:
    """The cluster state when nothing answers."""
    executors = tuple(
        ExecutorState(rid, address)
        for rid, address in sorted(settings.order_executor_addresses.items())
    )
    return ClusterState(
        QueueState(),
        executors,
        None,
        (),
        replicas_unknown(settings),
        PaymentState(settings.payment_address),
    )


def replicas_unknown(settings: Settings) -> tuple[ReplicaState, ...]:
    addresses = settings.books_database_addresses
    return tuple(ReplicaState(rid, address) for rid, address in sorted(addresses.items()))


def leader_of(queue: QueueState, executors: tuple[ExecutorState, ...]) -> Leader | None:
    """A live replica claiming leadership, preferring the one holding the queue's current
    epoch (a paused or deposed one may still claim)."""
    leading = [e for e in executors if e.alive and e.role == "leader"]
    leading.sort(key=lambda e: (e.epoch == queue.epoch, e.epoch or 0), reverse=True)
    return Leader(leading[0].replica_id, leading[0].epoch) if leading else None


@dataclass(frozen=True)
class Replication:
    """An order's replication steps (see books_database.trail), in log order;
    `answered`: the replicas that did."""

    answered: tuple[int, ...]
    steps: tuple[TrailEvent, ...]


@dataclass(frozen=True)
class CoordinatedStep:
    replica_id: int  # the executor that coordinated
    step: CommitmentStep
