"""A two-phase-commit coordinator for one order, as a pure state machine.

The txn id is the order id; the epoch is the leader's, issued by the queue.
The adapter performs every returned `Action` and feeds the answers back
(`on_decision_read`, `on_vote`, `on_logged`, `on_ack`, `on_refused`) with the
time; `on_tick(now)` drives timeouts and resends. Nothing here is durable:
the decision log (in the queue) is the coordinator's only memory, so a new
leader is simply a new Coordinator with a higher epoch.

Rules, as implemented:

1. Start by reading the decision log. COMMIT -> resend commits; ABORT ->
   resend aborts; nothing -> run the protocol afresh with my epoch
   (participants accept a re-prepare of the same txn at a higher epoch).
2. Prepare at every participant; resend to those that have not voted every
   `resend_interval`. A no vote (or a refused prepare) decides ABORT at once;
   no vote from someone within `vote_timeout` decides ABORT (no vote = no);
   every participant yes decides COMMIT.
3. The decision is logged durably before any commit or abort is sent. The
   log keeps the first decision for the txn: whatever it answers is the
   decision (presumed abort: no logged decision means abort).
4. Send the decision to every participant; resend to those that have not
   acknowledged every `resend_interval` until all have; then FINISHED.
5. STALE_EPOCH from the log or a participant: a newer leader owns the txn;
   stop (FENCED) and send nothing more. Any other refusal of a commit or
   abort breaks the protocol's invariant: stop (FAILED) and say so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from bookstore.commitment.participant import Decision


class Kind(StrEnum):
    READ_DECISION = "read-decision"
    PREPARE = "prepare"
    LOG_DECISION = "log-decision"
    COMMIT = "commit"
    ABORT = "abort"
    FINISHED = "finished"
    FAILED = "failed"


class Phase(StrEnum):
    READING = "reading"
    PREPARING = "preparing"
    LOGGING = "logging"
    COMMITTING = "committing"
    ABORTING = "aborting"
    DONE = "done"
    FENCED = "fenced"
    FAILED = "failed"


@dataclass(frozen=True)
class Action:
    kind: Kind
    participant: str = ""  # PREPARE, COMMIT, ABORT: to whom
    decision: Decision | None = None  # LOG_DECISION, FINISHED
    reason: str = ""


@dataclass(frozen=True)
class Timings:
    vote_timeout: float = 1.0  # votes missing this long after preparing -> abort
    resend_interval: float = 0.2  # unanswered messages are sent again this often


STALE_EPOCH = "STALE_EPOCH"


@dataclass
class Coordinator:
    txn_id: str
    epoch: int
    participants: Iterable[str]
    timings: Timings = field(default_factory=Timings)

    def __post_init__(self) -> None:
        self.names = tuple(dict.fromkeys(self.participants))
        if not self.names:
            raise ValueError("a transaction needs at least one participant")
        self.phase = Phase.READING
        self.decision: Decision | None = None
        self.reason = ""
        self.votes: dict[str, bool] = {}
        self.acks: set[str] = set()
        self._phase_since = 0.0
        self._sent_at = 0.0

    # -- helpers ----------------------------------------------------------------

    def _enter(self, phase: Phase, now: float) -> None:
        self.phase = phase
        self._phase_since = now
        self._sent_at = now

    def _pending(self) -> list[str]:
        if self.phase is Phase.PREPARING:
            return [p for p in self.names if p not in self.votes]
        return [p for p in self.names if p not in self.acks]

    def _messages(self, to: Iterable[str]) -> list[Action]:
        if self.phase is Phase.PREPARING:
            return [Action(Kind.PREPARE, p) for p in to]
        if self.phase is Phase.COMMITTING:
            return [Action(Kind.COMMIT, p) for p in to]
        return [Action(Kind.ABORT, p, reason=self.reason) for p in to]

    def _decide(self, decision: Decision, reason: str, now: float) -> list[Action]:
        """Rule 3: log first."""
        self.decision, self.reason = decision, reason
        self._enter(Phase.LOGGING, now)
        return [Action(Kind.LOG_DECISION, decision=decision, reason=reason)]

    def _send_decision(self, decision: Decision, reason: str, now: float) -> list[Action]:
        """Rule 4."""
        self.decision, self.reason = decision, reason
        self._enter(Phase.COMMITTING if decision is Decision.COMMIT else Phase.ABORTING, now)
        return self._messages(self.names)

    @property
    def finished(self) -> bool:
        return self.phase in (Phase.DONE, Phase.FENCED, Phase.FAILED)

    # -- rule 1 ------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        self._enter(Phase.READING, now)
        return [Action(Kind.READ_DECISION)]

    def on_decision_read(self, decision: Decision | None, reason: str, now: float) -> list[Action]:
        if self.phase is not Phase.READING:
            return []
        if decision is not None:
            return self._send_decision(decision, reason, now)
        self._enter(Phase.PREPARING, now)
        return self._messages(self.names)

    # -- rule 2 ------------------------------------------------------------------

    def on_vote(self, participant: str, yes: bool, reason: str, now: float) -> list[Action]:
        if self.phase is not Phase.PREPARING or participant not in self.names:
            return []
        if participant in self.votes:
            return []  # a resent prepare's duplicate answer
        self.votes[participant] = yes
        if not yes:
            return self._decide(Decision.ABORT, f"{participant}: {reason or 'voted no'}", now)
        if len(self.votes) == len(self.names):
            return self._decide(Decision.COMMIT, "", now)
        return []

    # -- rule 3 ------------------------------------------------------------------

    def on_logged(self, decision: Decision, reason: str, now: float) -> list[Action]:
        """The log's answer: the first decision logged for this txn."""
        if self.phase is not Phase.LOGGING:
            return []
        return self._send_decision(decision, reason, now)

    # -- rule 4 ------------------------------------------------------------------

    def on_ack(self, participant: str, now: float) -> list[Action]:
        if self.phase not in (Phase.COMMITTING, Phase.ABORTING) or participant not in self.names:
            return []
        self.acks.add(participant)
        if len(self.acks) < len(self.names):
            return []
        self._enter(Phase.DONE, now)
        return [Action(Kind.FINISHED, decision=self.decision, reason=self.reason)]

    # -- rule 5 ------------------------------------------------------------------

    def on_refused(self, participant: str, code: str, message: str, now: float) -> list[Action]:
        """A refusal from `participant` ("" for the decision log)."""
        if self.finished:
            return []
        if code == STALE_EPOCH:
            self._enter(Phase.FENCED, now)
            return []
        if self.phase is Phase.PREPARING and participant:
            return self.on_vote(participant, False, f"{code}: {message}", now)
        if self.phase in (Phase.COMMITTING, Phase.ABORTING) and participant:
            self._enter(Phase.FAILED, now)
            why = f"{participant} refused {self.decision}: {code}: {message}"
            return [Action(Kind.FAILED, participant, self.decision, why)]
        return []  # the log refused something else: the resend retries it

    # -- time --------------------------------------------------------------------

    def on_tick(self, now: float) -> list[Action]:
        t = self.timings
        if self.phase is Phase.PREPARING and now - self._phase_since >= t.vote_timeout:
            missing = ", ".join(self._pending())
            return self._decide(Decision.ABORT, f"no vote from {missing} in time", now)
        if self.finished or now - self._sent_at < t.resend_interval:
            return []
        self._sent_at = now
        if self.phase is Phase.READING:
            return [Action(Kind.READ_DECISION)]
        if self.phase is Phase.LOGGING:
            return [Action(Kind.LOG_DECISION, decision=self.decision, reason=self.reason)]
        return self._messages(self._pending())
