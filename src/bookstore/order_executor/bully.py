"""The Bully election as a pure state machine: messages and time in, messages out.

No sockets and no clocks here. The adapter (service.py) feeds every received
message to `on_message(msg, now)`, calls `on_tick(now)` regularly, reports
the queue's answers (`on_registered`, `on_fenced`, `on_queue_unreachable`)
and sends whatever `Outgoing` messages come back.

Rules, as implemented:

1. A node that starts (or restarts) calls an election at once and never
   trusts remembered leadership (so a restarted highest id takes over).
2. The leader heartbeats: a registered leader sends COORDINATOR to every
   replica every `heartbeat` (nobody answers it). A follower that hears no
   COORDINATOR from its leader for `leader_silence` calls an election; so
   does one whose adapter reports the leader's connection gone
   (`on_leader_lost`: a killed process closes its sockets at once). One
   message a heartbeat per follower, where pings cost a PING and a PONG.
3. Election: ELECTION to every higher id. No ANSWER within
   `election_timeout` -> I win.
4. ANSWER received (matching my ELECTION's nonce) but no COORDINATOR within
   `coordinator_timeout` -> re-elect.
5. ELECTION from a lower id -> ANSWER it; then start my own election (a
   leader instead re-announces COORDINATOR to it; a candidate is already
   electing).
6. Winning: become leader, ask the adapter to register with the queue; the
   queue's fresh epoch (`on_registered`) -> COORDINATOR to every replica.
7. COORDINATOR from a higher id -> follow it. COORDINATOR from a lower id
   while I am alive (and higher) -> start an election (bully it).
   A registered leader answers a lower id's COORDINATOR with its own
   instead of standing again. A COORDINATOR carrying an epoch older
   than one the queue granted me is stale and ignored (a paused leader's
   late messages are harmless).
8. A leader fenced by the queue (STALE_EPOCH, LEADER_ALIVE) steps down; a
   leader that cannot reach the queue for `queue_unreachable` steps down.
   Either way it stops claiming leadership (its heartbeats stop).
   A fenced node, leaderless for `failure_timeout`, calls an election again.
9. A node cut off from the queue ABSTAINS until the adapter reports the
   queue reachable again (`on_queue_reachable`): it neither answers nor
   calls elections and follows any COORDINATOR, so Bully does not keep
   electing a leader that cannot work. Reachable again -> election at once.
10. The epoch comes only from the queue (`on_registered`), the authority
    that issues it; it is never adopted from a peer's message, so a forged
    or corrupted number (say 2^63) can neither outbid every real grant nor
    make a winner re-register without end.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum

FOLLOWER = "follower"
CANDIDATE = "candidate"
LEADER = "leader"


class Kind(Enum):
    ELECTION = 1
    ANSWER = 2
    COORDINATOR = 3


@dataclass(frozen=True)
class Message:
    kind: Kind
    sender: int
    leader: int = 0  # COORDINATOR: who leads
    epoch: int = 0
    nonce: int = 0


@dataclass(frozen=True)
class Outgoing:
    to: int
    message: Message


@dataclass(frozen=True)
class Timings:
    heartbeat: float = 0.5  # the leader's COORDINATOR to every follower
    leader_silence: float = 1.5  # no heartbeat this long -> election
    failure_timeout: float = 0.5  # leaderless this long -> election
    election_timeout: float = 0.25
    coordinator_timeout: float = 0.6
    queue_unreachable: float = 1.0


@dataclass(frozen=True)
class Step:
    at: float  # the `now` it happened at
    replica_id: int
    step: str  # "called", "answered", "won", "registered", "coordinator", ...
    detail: str
    epoch: int


@dataclass
class _Election:
    nonce: int
    started_at: float
    answered_at: float | None = None


@dataclass
class Node:
    my_id: int
    peer_ids: Iterable[int]
    timings: Timings = field(default_factory=Timings)
    max_steps: int = 200
    # Called with every step as it happens (the adapter logs it); pure otherwise.
    listener: Callable[[Step], None] | None = None

    def __post_init__(self) -> None:
        self.peers = sorted(set(self.peer_ids) - {self.my_id})
        self.role = FOLLOWER
        self.leader: int | None = None
        self.epoch = 0  # the newest epoch the queue granted this node (rule 10)
        self.registered = False  # leader only: the queue granted `epoch` to me
        self.steps: deque[Step] = deque(maxlen=self.max_steps)
        self._nonce = 0
        self._election: _Election | None = None
        self._leader_since = 0.0  # when I became leader (registration deadline)
        self._heard_from_leader = 0.0  # the leader's last COORDINATOR came then
        self._last_heartbeat = float("-inf")  # leader: my last COORDINATOR to all
        self._leaderless_since = 0.0
        self.started = False
        self.abstaining = False  # rule 9

    # -- queries --------------------------------------------------------------

    @property
    def is_working_leader(self) -> bool:
        """Leader with an epoch from the queue: the only state that may dequeue."""
        return self.role == LEADER and self.registered

    @property
    def steady(self) -> bool:
        """Nothing falls due sooner than a heartbeat: a working leader, or a follower
        of a leader (the adapter may tick slowly)."""
        if self.is_working_leader:
            return True
        return self.role == FOLLOWER and self.leader is not None and not self.abstaining

    @property
    def needs_registration(self) -> bool:
        return self.role == LEADER and not self.registered

    # -- helpers --------------------------------------------------------------

    def _next_nonce(self) -> int:
        self._nonce += 1
        return self._nonce

    def _log(self, now: float, step: str, detail: str = "") -> None:
        entry = Step(now, self.my_id, step, detail, self.epoch)
        self.steps.append(entry)
        if self.listener is not None:
            self.listener(entry)

    def _msg(self, kind: Kind, **kw: int) -> Message:
        return Message(kind, self.my_id, **kw)

    def _become_follower(self, now: float, leader: int | None) -> None:
        self.role = FOLLOWER
        self.leader = leader
        self.registered = False
        self._election = None
        self._heard_from_leader = now
        self._leaderless_since = now

    def _higher(self) -> list[int]:
        return [p for p in self.peers if p > self.my_id]

    # -- rule 1: start ----------------------------------------------------------

    def start(self, now: float) -> list[Outgoing]:
        """Rule 1: a (re)started node calls an election at once."""
        self.started = True
        return self._call_election(now, "started")

    # -- rule 3: calling an election --------------------------------------------

    def _call_election(self, now: float, why: str) -> list[Outgoing]:
        higher = self._higher()
        self.role = CANDIDATE
        self.leader = None
        self.registered = False
        nonce = self._next_nonce()
        self._election = _Election(nonce, now)
        self._log(now, "called", f"{why}; ELECTION to {higher or 'nobody'}")
        if not higher:
            return self._win(now, "no higher id")
        return [Outgoing(p, self._msg(Kind.ELECTION, nonce=nonce)) for p in higher]

    # -- rule 6: winning ---------------------------------------------------------

    def _win(self, now: float, why: str) -> list[Outgoing]:
        self.role = LEADER
        self.leader = self.my_id
        self.registered = False
        self._election = None
        self._leader_since = now
        self._log(now, "won", f"{why}; registering with the queue")
        return []

    def on_registered(self, epoch: int, now: float) -> list[Outgoing]:
        """Rule 6: the queue granted `epoch`; announce COORDINATOR to every replica."""
        if self.role != LEADER or self.registered:
            # The queue did grant it: remember it, so that a later message of
            # that reign (or an older one) is recognised as stale.
            self._log(now, "late-registration", f"epoch {epoch} ignored (role {self.role})")
            self.epoch = max(self.epoch, epoch)
            return []
        if epoch < self.epoch:
            # Older than a grant the queue gave me before (the queue lost its
            # file?): ask again; the adapter backs off between attempts.
            self._log(now, "re-registering", f"granted epoch {epoch} < known {self.epoch}")
            return []
        self.registered = True
        self.epoch = epoch
        self._log(now, "registered", f"queue granted epoch {epoch}")
        self._log(now, "coordinator", f"COORDINATOR to {self.peers}")
        self._last_heartbeat = now
        return self._announce(self.peers)

    def _announce(self, to: Iterable[int]) -> list[Outgoing]:
        msg = self._msg(Kind.COORDINATOR, leader=self.my_id, epoch=self.epoch)
        return [Outgoing(p, msg) for p in to]

    # -- rule 8: the queue's verdicts --------------------------------------------

    def on_fenced(self, now: float, reason: str = "") -> list[Outgoing]:
        """Rule 8: the queue refused my epoch (or a higher leader is alive)."""
        if self.role != LEADER:
            return []
        self._log(now, "stepped-down", f"fenced by the queue: {reason}".rstrip(": "))
        self._become_follower(now, None)
        return []

    def on_queue_unreachable(self, now: float) -> list[Outgoing]:
        """Rules 8, 9: a leader that cannot reach the queue steps down and abstains."""
        if self.role != LEADER:
            return []
        self._log(now, "stepped-down", "queue unreachable; abstaining from elections")
        self._become_follower(now, None)
        self.abstaining = True
        return []

    def on_leader_lost(self, peer: int, now: float) -> list[Outgoing]:
        """Rule 2: the adapter saw my leader's connection close and stay closed."""
        if self.role != FOLLOWER or self.leader != peer or self.abstaining:
            return []
        return self._call_election(now, f"leader {peer} gone")

    def on_queue_reachable(self, now: float) -> list[Outgoing]:
        """Rule 9: the queue answers again: stand for election at once."""
        if not self.abstaining:
            return []
        self.abstaining = False
        return self._call_election(now, "queue reachable again")

    # -- messages -----------------------------------------------------------------

    def on_message(self, msg: Message, now: float) -> list[Outgoing]:
        if msg.sender == self.my_id or msg.sender not in self.peers:
            return []
        if not self.started:
            return self.start(now) + self.on_message(msg, now)
        handler = {
            Kind.ELECTION: self._on_election,
            Kind.ANSWER: self._on_answer,
            Kind.COORDINATOR: self._on_coordinator,
        }[msg.kind]
        return handler(msg, now)

    def _stale(self, msg: Message) -> bool:
        """Rule 7: the one check for leadership claims: an older epoch is stale."""
        return msg.epoch != 0 and msg.epoch < self.epoch

    def _on_election(self, msg: Message, now: float) -> list[Outgoing]:
        """Rule 5."""
        if msg.sender > self.my_id or self.abstaining:
            return []  # elections only go upwards; an abstainer stays silent
        out = [Outgoing(msg.sender, self._msg(Kind.ANSWER, nonce=msg.nonce))]
        self._log(now, "answered", f"ELECTION from {msg.sender}")
        if self.role == LEADER:
            if self.registered:
                out += self._announce([msg.sender])
            return out
        if self.role == CANDIDATE:
            return out
        return out + self._call_election(now, f"ELECTION from lower {msg.sender}")

    def _on_answer(self, msg: Message, now: float) -> list[Outgoing]:
        """Rule 4: a higher node took over; wait for its COORDINATOR."""
        e = self._election
        if self.role != CANDIDATE or e is None or msg.nonce != e.nonce or msg.sender < self.my_id:
            return []
        if e.answered_at is None:
            e.answered_at = now
            self._log(now, "answer-received", f"from {msg.sender}; awaiting COORDINATOR")
        return []

    def _on_coordinator(self, msg: Message, now: float) -> list[Outgoing]:
        """Rules 7 and 10: who leads changes; my epoch does not."""
        if self._stale(msg):
            self._log(now, "ignored", f"stale COORDINATOR from {msg.sender} epoch {msg.epoch}")
            return []
        if msg.sender > self.my_id:
            was_leader = self.role == LEADER
            if self.role != FOLLOWER or self.leader != msg.sender:
                self._log(
                    now,
                    "stepped-down" if was_leader else "following",
                    f"COORDINATOR from {msg.sender} epoch {msg.epoch}",
                )
            self._become_follower(now, msg.sender)
            return []
        if self.abstaining:
            self._log(now, "following", f"COORDINATOR from {msg.sender} (abstaining)")
            self._become_follower(now, msg.sender)
            return []
        # A lower id claims leadership while I am alive: bully it. A leader the
        # queue already granted an epoch only tells it who leads; the queue's
        # fencing settles which of the two grants is current.
        if self.role == CANDIDATE or self.needs_registration:
            return []
        if self.is_working_leader:
            self._log(now, "coordinator", f"COORDINATOR from lower {msg.sender}; re-announced")
            return self._announce([msg.sender])
        return self._call_election(now, f"COORDINATOR from lower {msg.sender}")

    # -- time ---------------------------------------------------------------------

    def on_tick(self, now: float) -> list[Outgoing]:
        if not self.started:
            return self.start(now)
        t = self.timings
        if self.role == CANDIDATE and self._election is not None:
            e = self._election
            if e.answered_at is None and now - e.started_at >= t.election_timeout:
                return self._win(now, "no ANSWER from a higher id")
            if e.answered_at is not None and now - e.answered_at >= t.coordinator_timeout:
                return self._call_election(now, "ANSWER but no COORDINATOR")
            return []
        if self.role == LEADER:
            if not self.registered and now - self._leader_since >= t.queue_unreachable:
                return self.on_queue_unreachable(now)
            if self.registered and now - self._last_heartbeat >= t.heartbeat:
                self._last_heartbeat = now
                return self._announce(self.peers)
            return []
        # Follower.
        if self.abstaining and (
            self.leader is None or now - self._heard_from_leader >= t.leader_silence
        ):
            self.leader = None
            return []
        if self.leader is None:
            if now - self._leaderless_since >= t.failure_timeout:
                return self._call_election(now, "no leader")
            return []
        if now - self._heard_from_leader >= t.leader_silence:
            return self._call_election(now, f"leader {self.leader} silent")
        return []
