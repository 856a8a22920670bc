"""An order executor: a Bully node (`order_executor.bully.Node`) and, while it leads
with an epoch from the queue, its work: lease orders and run each one's two-phase
commit (`commitment.coordinator.Coordinator`) against the books database, payment
and the queue's decision log, then complete it. Nothing of it is on disk: a
restarted executor starts a new election (Bully rule 1) and a new leader reads
the decision log (2PC rule 1)."""

from __future__ import annotations

from typing import Any

from bookstore.books_database.replication import NOT_PRIMARY, UNKNOWN
from bookstore.books_database.stock import COMMIT, OK, RELEASE, RESERVE, VOTED_NO, Op
from bookstore.commitment.coordinator import Action, Coordinator, Kind, Phase, Timings
from bookstore.commitment.participant import Decision
from bookstore.order_executor import bully
from bookstore.order_queue.state import Order
from bookstore.payment.ledger import Authorization
from bookstore.simulation import mutants
from bookstore.simulation.queue import EXECUTORS
from bookstore.simulation.world import Proc, World

BOOKS = "books-database"
PAYMENT = "payment"
QUEUE = "queue"
COORDINATOR_TIMINGS = Timings(vote_timeout=1.0, resend_interval=0.2)
BULLY_TIMINGS = bully.Timings()
MAX_INFLIGHT = 8  # orders one leader works on at once
RETRY_S = 0.2


class Executor(Proc):
    tick_s = 0.1

    def __init__(self, world: World, my_id: int) -> None:
        super().__init__(world, f"x{my_id}")
        self.my_id = my_id
        self.coordinator_class = mutants.coordinator_class(world.mutant)
        self.recover()

    def recover(self) -> None:
        self.node = bully.Node(self.my_id, EXECUTORS, BULLY_TIMINGS)
        mutants.patch_bully(self.node, self.world.mutant)
        self.coords: dict[str, Coordinator] = {}
        self.orders: dict[str, Order] = {}
        self.leases: dict[str, str] = {}
        self.completing: dict[str, tuple[Any, ...]] = {}
        self.work_epoch = 0
        self.recovered = False  # this epoch's unfinished decisions are finished
        self.recovering: set[str] = set()
        self.sent_at: dict[str, float] = {}  # "register", "take", "probe" -> when
        self.primary = 1
        self.unanswered = 0  # books writes sent since the last answer

    @property
    def leading(self) -> bool:
        return self.up and self.node.is_working_leader

    def boot(self) -> None:
        self._bully(self.node.start(self.now()))

    def _bully(self, outgoing: list[bully.Outgoing]) -> None:
        for out in outgoing:
            self.send(f"x{out.to}", ("bully", out.message))

    def _due(self, what: str, now: float, every: float = RETRY_S) -> bool:
        if now - self.sent_at.get(what, -1e9) < every:
            return False
        self.sent_at[what] = now
        return True

    # -- time ----------------------------------------------------------------------

    def tick(self) -> None:
        now = self.now()
        node = self.node
        self._bully(node.on_tick(now))
        if node.needs_registration and self._due("register", now):
            self.send(QUEUE, ("register", self.my_id))
        if node.abstaining and self._due("probe", now):
            self.send(QUEUE, ("probe",))
        if not node.is_working_leader:
            self._drop_work()
            return
        if node.epoch != self.work_epoch:
            self._drop_work()
            self.work_epoch = node.epoch
        self._recover(now)
        self._take(now)
        for oid, coordinator in list(self.coords.items()):
            self._perform(coordinator, coordinator.on_tick(now))
            if oid in self.completing and self._due(f"complete {oid}", now):
                self.send(QUEUE, self.completing[oid])

    def _recover(self, now: float) -> None:
        """Once per epoch, before any new order: list the unfinished decisions."""
        if not self.recovered and self._due("list", now):
            self.send(QUEUE, ("list_decisions", self.node.epoch))

    def _recovered(self, epoch: int, oids: tuple[str, ...], now: float) -> None:
        """Finish each listed decision as a new coordinator that reads the log first."""
        if self.recovered or not self.node.is_working_leader or epoch != self.node.epoch:
            return
        self.recovered = True
        for oid in oids:
            if oid in self.coords:
                continue
            coordinator = self.coordinator_class(oid, epoch, (BOOKS, PAYMENT), COORDINATOR_TIMINGS)
            self.coords[oid] = coordinator
            self.recovering.add(oid)
            self._perform(coordinator, coordinator.start(now))
        self._take(now)

    def _take(self, now: float) -> None:
        """One Dequeue in flight, for as many orders as there are free slots, once the
        epoch's recovery is done."""
        node = self.node
        free = MAX_INFLIGHT - len(self.coords)
        if not (node.is_working_leader and self.recovered and not self.recovering):
            return
        if free > 0 and self._due("take", now):
            self.send(QUEUE, ("take", self.my_id, node.epoch, free))

    def _drop_work(self) -> None:
        if self.coords:
            self.coords.clear()
            self.orders.clear()
            self.leases.clear()
            self.completing.clear()
        self.recovered = False
        self.recovering.clear()
        self.sent_at.pop("take", None)
        self.sent_at.pop("list", None)

    # -- messages --------------------------------------------------------------------

    def receive(self, src: str, m: tuple[Any, ...]) -> None:
        kind = m[0]
        now = self.now()
        if kind == "bully":
            self._bully(self.node.on_message(m[1], now))
        elif kind == "registered":
            self._bully(self.node.on_registered(m[1], now))
        elif kind == "probe_ok":
            self._bully(self.node.on_queue_reachable(now))
        elif kind == "refused":
            self._refused(m[1], m[2], m[3], m[4], now)
        elif kind == "empty":
            self.sent_at.pop("take", None)
        elif kind == "leased":
            self._leased(m[1], m[2], now)
        elif kind == "decisions":
            self._recovered(m[1], m[2], now)
        elif kind == "db_answer":
            self._db_answer(m[1], m[2], m[3], m[4], now)
        else:
            self._answer(kind, m, now)

    def _refused(self, what: str, code: str, oid: str, original: Any, now: float) -> None:
        if what == "register" or code == "STALE_EPOCH":
            self._bully(self.node.on_fenced(now, code))
        if what == "log_decision":
            coordinator = self._coordinator(oid, original[2])
            if coordinator is not None:
                self._perform(coordinator, coordinator.on_refused("", code, code, now))
        elif what == "complete":
            self._forget(oid)
        elif what == "take":
            self.sent_at.pop("take", None)

    def _leased(self, epoch: int, batch: tuple[tuple[str, str, Order], ...], now: float) -> None:
        self.sent_at.pop("take", None)
        if not self.node.is_working_leader or epoch != self.node.epoch:
            return
        for oid, lease_id, order in batch:
            self.leases[oid] = lease_id
            if oid in self.coords:
                continue  # redelivered while its transaction runs here: that one completes it
            coordinator = self.coordinator_class(oid, epoch, (BOOKS, PAYMENT), COORDINATOR_TIMINGS)
            self.coords[oid] = coordinator
            self.orders[oid] = order
            actions = coordinator.start(now)
            if order.deliveries <= 1:  # a first delivery: no decision can be logged yet
                actions = coordinator.on_decision_read(None, "", now)
            self._perform(coordinator, actions)
        self._take(now)

    def _coordinator(self, oid: str, epoch: int) -> Coordinator | None:
        coordinator = self.coords.get(oid)
        return coordinator if coordinator is not None and coordinator.epoch == epoch else None

    def _answer(self, kind: str, m: tuple[Any, ...], now: float) -> None:
        oid, epoch = m[1], m[2]
        c = self._coordinator(oid, epoch)
        if c is None:
            return
        if kind == "pay_vote":
            actions = c.on_vote(PAYMENT, m[3], m[4], now)
        elif kind == "pay_ack":
            actions = c.on_ack(PAYMENT, now)
        elif kind == "pay_refused":
            actions = c.on_refused(PAYMENT, m[3], m[4], now)
        elif kind == "logged":
            actions = c.on_logged(Decision(m[3][0]), m[3][1], now)
        elif kind == "decision":
            d = m[3]
            actions = c.on_decision_read(Decision(d[0]) if d else None, d[1] if d else "", now)
        else:  # "completed"
            self._forget(oid)
            self._take(now)
            return
        self._perform(c, actions)

    def _db_answer(self, request_id: str, code: str, message: str, leader: int, now: float) -> None:
        self.unanswered = 0
        if code in (NOT_PRIMARY, UNKNOWN):
            if code == NOT_PRIMARY:
                self.primary = leader if leader else self.primary % 3 + 1
            return
        self.world.inv.returned(request_id, code)  # type: ignore[union-attr]
        oid, kind, epoch = request_id.split("/")
        c = self._coordinator(oid, int(epoch))
        if c is None:
            return
        if kind == RESERVE and code in (OK, VOTED_NO):
            actions = c.on_vote(BOOKS, code == OK, message, now)
        elif kind != RESERVE and code == OK:
            actions = c.on_ack(BOOKS, now)
        else:
            actions = c.on_refused(BOOKS, code, message, now)
        self._perform(c, actions)

    def _forget(self, oid: str) -> None:
        self.coords.pop(oid, None)
        self.recovering.discard(oid)
        self.orders.pop(oid, None)
        self.leases.pop(oid, None)
        self.completing.pop(oid, None)

    # -- the coordinator's actions -----------------------------------------------------------

    def _perform(self, c: Coordinator, actions: list[Action]) -> None:
        oid, epoch = c.txn_id, c.epoch
        for a in actions:
            k = a.kind
            if k in (Kind.PREPARE, Kind.COMMIT, Kind.ABORT):
                self._to_participant(c, a)
            elif k is Kind.READ_DECISION:
                self.send(QUEUE, ("read_decision", self.my_id, epoch, oid))
            elif k is Kind.LOG_DECISION:
                assert a.decision is not None
                decision = ("log_decision", self.my_id, epoch, oid, a.decision.value, a.reason)
                self.send(QUEUE, decision)
            elif k is Kind.FINISHED:
                outcome = "executed" if a.decision is Decision.COMMIT else "rejected"
                lease = self.leases.get(oid, "")
                done = ("complete", self.my_id, epoch, oid, lease, outcome, a.reason[:200])
                self.completing[oid] = done
                self.sent_at[f"complete {oid}"] = self.now()
                self.send(QUEUE, done)
            elif k is Kind.FAILED:
                self.world.inv.fail(f"coordinator of {oid} failed: {a.reason}")  # type: ignore[union-attr]
        if c.phase is Phase.FENCED:
            self._forget(oid)
            self._bully(self.node.on_fenced(self.now(), "a participant refused the epoch"))

    def _to_participant(self, c: Coordinator, a: Action) -> None:
        oid, epoch = c.txn_id, c.epoch
        order = self.orders.get(oid)  # None when recovered: its decision is logged
        if a.participant == PAYMENT:
            if a.kind is Kind.PREPARE:
                assert order is not None, f"a recovered {oid} prepares"
                auth = Authorization(order.payment_token, order.amount_cents, "EUR")
                self.send(PAYMENT, ("pay_prepare", oid, epoch, auth))
            elif a.kind is Kind.COMMIT:
                self.send(PAYMENT, ("pay_commit", oid, epoch))
            else:
                self.send(PAYMENT, ("pay_abort", oid, epoch, a.reason))
            return
        kind = {Kind.PREPARE: RESERVE, Kind.COMMIT: COMMIT, Kind.ABORT: RELEASE}[a.kind]
        items: tuple[tuple[str, int], ...] = ()
        if kind == RESERVE:
            assert order is not None, f"a recovered {oid} prepares"
            items = tuple(sorted((i.book_id, i.quantity) for i in order.items))
        request_id = f"{oid}/{kind}/{epoch}"
        self.world.inv.invoked(request_id, Op(kind, request_id, oid, epoch, items))  # type: ignore[union-attr]
        self.unanswered += 1
        if self.unanswered > 3:
            self.unanswered = 0
            self.primary = self.primary % 3 + 1
        self.send(
            f"db{self.primary}", ("write", request_id, Op(kind, request_id, oid, epoch, items))
        )
