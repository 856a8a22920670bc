"""A simulated world for two-phase commit: leaders, a decision log, two
participants and a network that loses, duplicates and delays, on fake time.

Everything durable (the decision log, the participants' stores) survives a
crash; everything else (coordinators, messages in flight) may be lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bookstore.commitment.coordinator import Action, Coordinator, Kind, Timings
from bookstore.commitment.participant import (
    Decision,
    MemoryStore,
    Participant,
    State,
    TxnError,
)

TIMINGS = Timings(vote_timeout=1.0, resend_interval=0.2)
DT = 0.1
STOCK, PAYMENT, LOG = "books", "payment", "log"
# The payment request: (amount in cents, the card's test behaviour).
PaymentRequest = tuple[int, str]


@dataclass(frozen=True)
class OrderSpec:
    order_id: str
    quantity: int
    amount: int
    card: str  # "ok" | "declined"


@dataclass
class Message:
    to: str  # a participant, LOG, or "coordinator"
    kind: str
    txn_id: str
    epoch: int
    leader: int = 0  # whose coordinator sent it / gets the reply
    body: Any = None


class StockParticipant:
    """Copies of one book: a prepare reserves, a commit takes them."""

    def __init__(self, initial: int) -> None:
        self.initial = initial
        self.store: MemoryStore[int] = MemoryStore()
        self.participant = Participant(self.store)

    def _held(self, states: tuple[State, ...]) -> int:
        return sum(r.request or 0 for r in self.store.records.values() if r.state in states)

    @property
    def available(self) -> int:
        return self.initial - self._held((State.PREPARED, State.COMMITTED))

    @property
    def taken(self) -> int:
        return self._held((State.COMMITTED,))

    def check(self, quantity: int) -> str:
        return "" if quantity <= self.available else "out of stock"


class PaymentParticipant:
    def __init__(self) -> None:
        self.store: MemoryStore[PaymentRequest] = MemoryStore()
        self.participant = Participant(self.store)

    @staticmethod
    def check(request: PaymentRequest) -> str:
        return "card declined" if request[1] == "declined" else ""

    @property
    def captured(self) -> int:
        return sum(
            r.request[0]
            for r in self.store.records.values()
            if r.state is State.COMMITTED and r.request is not None
        )


@dataclass
class Leader:
    number: int  # index in World.leaders
    epoch: int
    alive: bool = True
    coordinators: dict[str, Coordinator] = field(default_factory=dict)


@dataclass
class World:
    orders: list[OrderSpec]
    stock: int
    now: float = 0.0

    def __post_init__(self) -> None:
        self.books = StockParticipant(self.stock)
        self.payment = PaymentParticipant()
        self.decisions: dict[str, tuple[Decision, str]] = {}
        self.queue_epoch = 0
        self.completed: dict[str, Decision] = {}
        self.net: list[Message] = []
        self.leaders: list[Leader] = []
        self.failures: list[str] = []
        self.by_id = {o.order_id: o for o in self.orders}
        self.new_leader()

    # -- leaders ----------------------------------------------------------------

    def new_leader(self) -> None:
        """The queue grants a higher epoch; the new leader redrives every order."""
        self.queue_epoch += 1
        leader = Leader(len(self.leaders), self.queue_epoch)
        self.leaders.append(leader)
        for order in self.orders:
            if order.order_id not in self.completed:
                c = Coordinator(order.order_id, leader.epoch, (STOCK, PAYMENT), TIMINGS)
                leader.coordinators[order.order_id] = c
                self._act(leader, c, c.start(self.now))

    def crash_leader(self) -> None:
        self.leaders[-1].alive = False
        self.new_leader()

    def pause_leader(self) -> None:
        """The leader is deposed but keeps running (a zombie)."""
        self.new_leader()

    def crash_participant(self, name: str) -> None:
        """Messages to it are lost; it restarts and asks the log about prepared txns."""
        self.net = [m for m in self.net if m.to != name]
        target = self.books if name == STOCK else self.payment
        records = list(target.store.records.values())
        for record in records:
            if record.state is State.PREPARED:
                logged = self.decisions.get(record.txn_id)
                target.participant.resolve(record.txn_id, logged[0] if logged else None)

    def isolate(self, name: str, seconds: float = 1.2) -> None:
        """`name` is unreachable for `seconds` (longer than the vote timeout):
        every message to it is lost meanwhile; everything else goes on."""
        for _ in range(round(seconds / DT)):
            self.tick()
            self.net = [m for m in self.net if m.to != name]
            while any(m.to != name for m in self.net):
                self.deliver(next(i for i, m in enumerate(self.net) if m.to != name))
            self.net = [m for m in self.net if m.to != name]

    # -- the adapter: actions out, answers in ----------------------------------------

    def _act(self, leader: Leader, c: Coordinator, actions: list[Action]) -> None:
        order = self.by_id[c.txn_id]
        for a in actions:
            send = Message(a.participant, a.kind.value, c.txn_id, c.epoch, leader.number)
            if a.kind is Kind.READ_DECISION:
                send.to = LOG
            elif a.kind is Kind.LOG_DECISION:
                send.to, send.body = LOG, (a.decision, a.reason)
            elif a.kind is Kind.PREPARE:
                send.body = order.quantity if a.participant == STOCK else (order.amount, order.card)
            elif a.kind is Kind.ABORT:
                send.body = a.reason
            elif a.kind is Kind.FINISHED:
                assert a.decision is not None
                self._complete(leader, c.txn_id, a.decision)
                continue
            elif a.kind is Kind.FAILED:
                self.failures.append(a.reason)
                continue
            self.net.append(send)

    def _complete(self, leader: Leader, order_id: str, decision: Decision) -> None:
        """The queue records the outcome, fenced by epoch, once per order."""
        if leader.epoch != self.queue_epoch:
            return
        logged = self.decisions.get(order_id)
        assert logged is not None and logged[0] is decision, "finished without a logged decision"
        self.completed.setdefault(order_id, decision)

    def _reply(self, m: Message, kind: str, body: Any) -> None:
        self.net.append(Message("coordinator", kind, m.txn_id, m.epoch, m.leader, body))

    def _at_log(self, m: Message) -> None:
        if m.kind == Kind.READ_DECISION.value:
            self._reply(m, "decision", self.decisions.get(m.txn_id))
            return
        if m.epoch < self.queue_epoch:
            self._reply(m, "refused", (LOG, "STALE_EPOCH"))
            return
        logged = self.decisions.setdefault(m.txn_id, m.body)
        self._reply(m, "logged", logged)

    def _at_participant(self, m: Message) -> None:
        target = self.books if m.to == STOCK else self.payment
        p: Participant[Any] = target.participant
        try:
            if m.kind == Kind.PREPARE.value:
                vote = p.prepare(m.txn_id, m.epoch, m.body, target.check)
                self._reply(m, "vote", (m.to, vote.yes, vote.reason))
            elif m.kind == Kind.COMMIT.value:
                p.commit(m.txn_id, m.epoch)
                self._reply(m, "ack", m.to)
            else:
                p.abort(m.txn_id, m.epoch, m.body)
                self._reply(m, "ack", m.to)
        except TxnError as exc:
            self._reply(m, "refused", (m.to, exc.code))

    def _at_coordinator(self, m: Message) -> None:
        leader = self.leaders[m.leader]
        c = leader.coordinators.get(m.txn_id)
        if not leader.alive or c is None:
            return
        now = self.now
        if m.kind == "decision":
            out = c.on_decision_read(*(m.body or (None, "")), now)
        elif m.kind == "vote":
            out = c.on_vote(*m.body, now)
        elif m.kind == "logged":
            out = c.on_logged(*m.body, now)
        elif m.kind == "ack":
            out = c.on_ack(m.body, now)
        else:
            out = c.on_refused(m.body[0] if m.body[0] != LOG else "", m.body[1], "", now)
        self._act(leader, c, out)

    # -- the network and time ------------------------------------------------------

    def deliver(self, index: int, keep: bool = False) -> None:
        """Deliver message `index` (kept in flight too when `keep`: a duplicate)."""
        if not self.net:
            return
        m = self.net[index % len(self.net)]
        if not keep:
            self.net.remove(m)
        if m.to == LOG:
            self._at_log(m)
        elif m.to == "coordinator":
            self._at_coordinator(m)
        else:
            self._at_participant(m)

    def drop(self, index: int) -> None:
        if self.net:
            del self.net[index % len(self.net)]

    def tick(self) -> None:
        self.now += DT
        for leader in self.leaders:
            if leader.alive:
                for c in list(leader.coordinators.values()):
                    self._act(leader, c, c.on_tick(self.now))

    def heal(self, rounds: int = 2000) -> None:
        """No more faults: deliver everything, tick, until every order is done."""
        for _ in range(rounds):
            if self.net:
                self.deliver(0)
            elif len(self.completed) == len(self.orders) and self._quiet():
                return
            else:
                self.tick()
        raise AssertionError(f"not done after {rounds} rounds: {len(self.completed)} completed")

    def _quiet(self) -> bool:
        return all(c.finished for ld in self.leaders if ld.alive for c in ld.coordinators.values())

    # -- the audit ---------------------------------------------------------------

    def audit(self) -> None:
        """Every order executed (copies taken once, payment captured once, same amount)
        or rejected (nothing taken, nothing captured); totals add up."""
        assert not self.failures, self.failures
        executed = [o for o in self.orders if self.completed[o.order_id] is Decision.COMMIT]
        for order in self.orders:
            commit = self.completed[order.order_id] is Decision.COMMIT
            assert self.decisions[order.order_id][0] is self.completed[order.order_id]
            want = State.COMMITTED if commit else State.ABORTED
            for store in (self.books.store, self.payment.store):
                record = store.get(order.order_id)
                if record is None and not commit:
                    continue  # never reached it: nothing held, nothing taken
                assert record is not None and record.state is want, (order, record)
            if commit:
                paid = self.payment.store.get(order.order_id)
                assert paid is not None and paid.request == (order.amount, order.card)
        assert self.books.taken == sum(o.quantity for o in executed)
        assert self.books.available == self.stock - self.books.taken
        assert self.payment.captured == sum(o.amount for o in executed)
