"""The messages of each order's two-phase commit, as the coordinator saw them: a
bounded per-order list the leader executor keeps in memory and reports
(OrderExecutor.Commitment) for the cluster view's commitment diagram.

    prepare    coordinator -> participant   (reserve, authorize)
    vote       participant -> coordinator   detail "yes" or "no: <why>"
    decision   coordinator -> decision-log  (log_decision) detail "commit" | "abort"
    logged     decision-log -> coordinator  the decision the log holds (the first one)
    decision   coordinator -> participant   (commit/capture or release/void)
    ack        participant -> coordinator

The adapter running a `Coordinator` calls `sent` for each Action it performs and
`answered` for each answer it feeds back.
"""

from __future__ import annotations

from dataclasses import dataclass

from bookstore.bounded import BoundedMapping
from bookstore.commitment.coordinator import Action, Kind
from bookstore.timestamps import utc_iso

COORDINATOR = "coordinator"
DECISION_LOG = "decision-log"
ORDERS_KEPT = 2_000  # orders whose commitment an executor remembers
STEPS_PER_ORDER = 64  # resends included; more are dropped


@dataclass(frozen=True)
class CommitmentStep:
    at: str  # RFC 3339, UTC
    kind: str  # "prepare" | "vote" | "decision" | "logged" | "ack"
    sender: str  # "coordinator" | "decision-log" | a participant ("books-database", "payment")
    receiver: str
    detail: str
    epoch: int  # the coordinator's (leader's) epoch


class CommitmentTrace:
    def __init__(self, kept: int = ORDERS_KEPT) -> None:
        self._steps: BoundedMapping[str, list[CommitmentStep]] = BoundedMapping(kept)

    def steps(self, order_id: str) -> tuple[CommitmentStep, ...]:
        return tuple(self._steps.get(order_id, ()))

    def record(self, order_id: str, step: CommitmentStep) -> None:
        found = self._steps.get(order_id)
        if found is None:
            found = self._steps[order_id] = []
        if len(found) < STEPS_PER_ORDER:
            found.append(step)

    def sent(self, order_id: str, epoch: int, action: Action) -> None:
        """An action of the coordinator that is a message (the others are ignored)."""
        decision = str(action.decision or "")
        if action.kind is Kind.PREPARE:
            step = (Kind.PREPARE.value, action.participant, "")
        elif action.kind is Kind.LOG_DECISION:
            step = ("decision", DECISION_LOG, decision)
        elif action.kind in (Kind.COMMIT, Kind.ABORT):
            step = ("decision", action.participant, action.kind.value)
        else:
            return
        kind, receiver, detail = step
        self.record(order_id, CommitmentStep(utc_iso(), kind, COORDINATOR, receiver, detail, epoch))

    def answered(self, order_id: str, epoch: int, kind: str, sender: str, detail: str) -> None:
        """A vote or an ack from a participant, or the log's answer (sender decision-log)."""
        self.record(order_id, CommitmentStep(utc_iso(), kind, sender, COORDINATOR, detail, epoch))
