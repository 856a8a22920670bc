"""The bug zoo: deliberate bugs the simulator must catch, each off unless named.

A mutant never lives in the product: the simulator swaps in a subclass of a
core, patches one method of one instance, or tells a core a lie (a store that
forgets the epoch, a final clock that covers everything). The product code
reads no flag.
"""

from __future__ import annotations

from bookstore.books_database.replication import Replica
from bookstore.books_database.stock import StockMachine
from bookstore.commitment.coordinator import Action, Coordinator, Phase
from bookstore.commitment.participant import Decision
from bookstore.orchestrator import flow
from bookstore.order_executor import bully

IGNORES_EPOCH = "participant-ignores-epoch"
ACKS_BEFORE_MAJORITY = "primary-acks-before-majority"
ACKS_BEFORE_FSYNC = "queue-acks-before-fsync"
YIELDS_TO_LOWER = "bully-yields-to-lower-id"
SKIPS_FINAL_CHECK = "service-skips-final-clock-check"
COMMITS_ON_MISSING_VOTE = "coordinator-commits-on-missing-vote"
SKIPS_DECISION_LOG = "coordinator-skips-decision-log"
APPROVES_CANCELLED = "flow-approves-cancelled"
QUEUE_IGNORES_FENCING = "queue-ignores-fencing"

MUTANTS = {
    IGNORES_EPOCH: "books database and payment accept a deposed leader's epoch",
    ACKS_BEFORE_MAJORITY: "a books primary commits (and answers) before a majority holds the entry",
    ACKS_BEFORE_FSYNC: "the queue acknowledges an order before its fsync",
    YIELDS_TO_LOWER: "a Bully node follows a COORDINATOR from a lower id",
    SKIPS_FINAL_CHECK: "a checkout service forgets an order without the final-clock check",
    COMMITS_ON_MISSING_VOTE: "the 2PC coordinator counts a vote that timed out as a yes",
    SKIPS_DECISION_LOG: "the 2PC coordinator sends its decision without logging it first",
    APPROVES_CANCELLED: "the checkout flow approves an order it cancelled",
    QUEUE_IGNORES_FENCING: "the queue lets any replica act under any epoch",
}


# -- the flow ----------------------------------------------------------------------


class _ApprovesCancelled(flow.Checkout):
    def _outcome(self) -> flow.Outcome:
        outcome = super()._outcome()
        if self._failed is None:
            outcome.approved, outcome.reason = True, ""
        return outcome


def checkout_class(mutant: str) -> type[flow.Checkout]:
    return _ApprovesCancelled if mutant == APPROVES_CANCELLED else flow.Checkout


# -- the coordinator -----------------------------------------------------------------


class _CommitsOnMissingVote(Coordinator):
    def on_tick(self, now: float) -> list[Action]:
        timed_out = now - self._phase_since >= self.timings.vote_timeout
        if self.phase is Phase.PREPARING and timed_out and all(self.votes.values()):
            return self._decide(Decision.COMMIT, "", now)
        return super().on_tick(now)


class _SkipsDecisionLog(Coordinator):
    def _decide(self, decision: Decision, reason: str, now: float) -> list[Action]:
        return self._send_decision(decision, reason, now)


def coordinator_class(mutant: str) -> type[Coordinator]:
    if mutant == COMMITS_ON_MISSING_VOTE:
        return _CommitsOnMissingVote
    if mutant == SKIPS_DECISION_LOG:
        return _SkipsDecisionLog
    return Coordinator


# -- Bully -----------------------------------------------------------------------------


def patch_bully(node: bully.Node, mutant: str) -> None:
    if mutant != YIELDS_TO_LOWER:
        return
    original = node._on_coordinator

    def follows_anyone(msg: bully.Message, now: float) -> list[bully.Outgoing]:
        if msg.sender < node.my_id and not node._stale(msg):
            node._become_follower(now, msg.sender)
            return []
        return original(msg, now)

    node._on_coordinator = follows_anyone  # type: ignore[method-assign]


# -- the books database ----------------------------------------------------------------


class _ForgetfulMachine(StockMachine):
    """Its highest epoch always reads 0: the participant's fencing never refuses."""

    @property
    def max_epoch(self) -> int:
        return 0

    @max_epoch.setter
    def max_epoch(self, value: int) -> None:
        pass


def machine_class(mutant: str) -> type[StockMachine]:
    return _ForgetfulMachine if mutant == IGNORES_EPOCH else StockMachine


def patch_replica(replica: Replica, mutant: str) -> None:
    if mutant != ACKS_BEFORE_MAJORITY:
        return

    def commit_alone() -> None:
        for index in range(replica.last_index, replica.commit, -1):
            if replica.log[index].view == replica.view:
                replica._advance_commit(index)
                return

    replica._primary_commit = commit_alone  # type: ignore[method-assign]
