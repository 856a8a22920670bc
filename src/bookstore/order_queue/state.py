"""The queue's rules as a pure state machine: priority, leases, epochs, fencing.

No I/O and no clock: whatever depends on time takes `now`, and lease ids come
from `lease_ids` (both injected, so a simulator can drive this on fake time).
A refusal is raised as a `QueueError` whose `code` is the named result code.
The adapter (store.py) asks first (`new_order`, `check_register`,
`check_complete`, `check_decision`), makes the accepted change durable, and
only then reports it here (`on_enqueued`, `on_registered`, `on_completed`):
memory never runs ahead of the disk. The writes re-check in their transaction
what the disk knows (epoch, duplicates, unknown orders).

Rules, as implemented:

1. Priority is computed here, from validated quantities: more books first,
   then arrival, by the sequence number the queue assigned (never a clock).
   An order is bounded (items, quantities, text lengths, amount), else
   BAD_REQUEST.
2. Only configured replica ids may register, dequeue, renew or complete
   (UNKNOWN_REPLICA): a foreign id could take the epoch from the real leader,
   and a huge one would win every LEADER_ALIVE check.
3. A registration is refused (LEADER_ALIVE) while a higher replica id holds
   the epoch and was active within `failure_timeout_s`. A granted one (a new
   epoch, persisted before it is used) voids every lease of older epochs.
4. Fencing, written once (`_fence`): dequeue, renew and complete must carry
   the current epoch and the leader's id, else STALE_EPOCH and nothing
   changes. Every call that passes counts as the leader being active.
5. Dequeue leases the highest-priority deliverable order, one at a time. A
   lease that runs out (`expires_at <= now`) makes the order deliverable
   again, where its priority says (so ahead of any lower-priority order).
   Leases are never persisted: after a restart every order is deliverable
   again (at-least-once delivery; the exactly-once effect comes from
   completing by order id).
6. Renewing needs the live lease on the order (LEASE_LOST otherwise).
7. A completion is refused (LEASE_LOST) only while another lease holds the
   order: one whose lease ran out but was not handed out again may still be
   completed under the same epoch. Its outcome is `executed` or `rejected`.
8. A decision for the coordinator log under an epoch older than the current
   one is refused (STALE_EPOCH); the log (decisions.py) keeps the first.
9. The first decision is the order's commit point: once it is on disk the
   order is executed (commit) or rejected (abort) and leaves the queue, as a
   completion makes an order without a decision leave it (`on_completed`).
   Its lease goes with it; the completion the leader sends after the
   participants acknowledged the decision only finishes the decision.
"""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

MAX_ID_CHARS = 128
MAX_TEXT_CHARS = 256
MAX_AMOUNT_CENTS = 10**12
OUTCOMES = ("executed", "rejected")
DECISIONS = ("commit", "abort")
MAX_REASON_CHARS = 512


class QueueError(Exception):
    """A request the queue refuses; `code` is the named result code."""

    code = "BAD_REQUEST"

    def __init__(self, message: str) -> None:
        super().__init__(f"{self.code}: {message}")
        self.message = message


class BadRequest(QueueError):
    code = "BAD_REQUEST"


class StaleEpoch(QueueError):
    code = "STALE_EPOCH"


class LeaseLost(QueueError):
    code = "LEASE_LOST"


class LeaderAlive(QueueError):
    code = "LEADER_ALIVE"


class UnknownOrder(QueueError):
    code = "UNKNOWN_ORDER"


class UnknownReplica(QueueError):
    code = "UNKNOWN_REPLICA"


@dataclass(frozen=True)
class Item:
    book_id: str
    title: str
    quantity: int


@dataclass
class Order:
    order_id: str
    items: tuple[Item, ...]
    customer_name: str
    books: int
    sequence: int
    deliveries: int = 0
    payment_token: str = ""  # the payment service's token (never card data)
    amount_cents: int = 0  # what the order costs: catalogue price_cents x quantity
    trace_context: str = ""  # its checkout's W3C trace context ("" after a restart)
    enqueued_at: float = 0.0  # wall-clock seconds, for the oldest wait (never priority)


@dataclass
class Lease:
    lease_id: str
    order_id: str
    replica_id: int
    epoch: int
    expires_at: float


@dataclass(frozen=True)
class Completion:
    """The leader's Complete: the order executed, or rejected with the reason."""

    replica_id: int
    epoch: int
    lease_id: str
    order_id: str
    outcome: str = "executed"
    reason: str = ""
    amount_cents: int = 0


@dataclass(frozen=True)
class Decide:
    """The leader's LogDecision for the coordinator log (decisions.py): the order's
    commit point, which records its execution (the amount to capture, or the
    customer's reason) with the decision."""

    order_id: str
    decision: str
    epoch: int
    reason: str = ""
    amount_cents: int = 0
    customer_reason: str = ""


LeaderOp = Completion | Decide


@dataclass(frozen=True)
class Limits:
    max_items: int = 100
    max_quantity: int = 100


def new_order(
    order_id: str,
    items: Sequence[Item],
    customer_name: str,
    limits: Limits,
    payment_token: str = "",
    amount_cents: int = 0,
) -> Order:
    """A new order with its priority computed here (rule 1), or BadRequest.
    Its sequence is 0 until the disk assigns one."""
    if not order_id or len(order_id) > MAX_ID_CHARS:
        raise BadRequest(f"order id must be 1..{MAX_ID_CHARS} characters")
    if not items:
        raise BadRequest("an order needs at least one item")
    if len(items) > limits.max_items:
        raise BadRequest(f"at most {limits.max_items} items per order")
    for item in items:
        if not 1 <= item.quantity <= limits.max_quantity:
            raise BadRequest(
                f"quantity {item.quantity} of {item.title or item.book_id!r}"
                f" is outside 1..{limits.max_quantity}"
            )
        if len(item.title) > MAX_TEXT_CHARS or len(item.book_id) > MAX_TEXT_CHARS:
            raise BadRequest("book id or title too long")
    if len(customer_name) > MAX_TEXT_CHARS:
        raise BadRequest("customer name too long")
    if len(payment_token) > MAX_ID_CHARS:
        raise BadRequest("payment token too long")
    if not 0 <= amount_cents <= MAX_AMOUNT_CENTS:
        raise BadRequest(f"amount must be 0..{MAX_AMOUNT_CENTS} cents")
    books = sum(item.quantity for item in items)
    return Order(order_id, tuple(items), customer_name, books, 0, 0, payment_token, amount_cents)


def _random_lease_id() -> str:
    return uuid.uuid4().hex


class QueueState:
    """Waiting orders by priority, their leases, and who holds which epoch."""

    def __init__(
        self,
        *,
        lease_s: float = 2.0,
        failure_timeout_s: float = 0.5,
        limits: Limits | None = None,
        replica_ids: Iterable[int] | None = None,
        lease_ids: Callable[[], str] = _random_lease_id,
    ) -> None:
        self.lease_s = lease_s
        self.failure_timeout_s = failure_timeout_s
        self.limits = limits or Limits()
        # None: any positive id (unit tests); the service passes the configured ones.
        self.replica_ids = None if replica_ids is None else frozenset(replica_ids)
        self._lease_ids = lease_ids
        self.orders: dict[str, Order] = {}  # every order not yet executed, oldest first
        self.leases: dict[str, Lease] = {}  # order id -> its lease
        # (-books, sequence, order id) of deliverable orders; entries of
        # orders since leased or executed are skipped when they surface.
        self._heap: list[tuple[int, int, str]] = []
        self.epoch = 0
        self.leader_id = 0
        self.leader_active_at = float("-inf")
        self.executed = 0  # orders executed since the file was created

    @property
    def depth(self) -> int:
        return len(self.orders)

    def restore(self, epoch: int, leader_id: int, executed: int, queued: Iterable[Order]) -> None:
        """What the disk holds, at start: every queued order is deliverable (rule 5)."""
        self.epoch, self.leader_id, self.executed = epoch, leader_id, executed
        for order in sorted(queued, key=lambda o: o.sequence):
            self.on_enqueued(order, order.sequence)

    def new_order(
        self,
        order_id: str,
        items: Sequence[Item],
        customer_name: str,
        payment_token: str = "",
        amount_cents: int = 0,
    ) -> Order:
        return new_order(order_id, items, customer_name, self.limits, payment_token, amount_cents)

    def on_enqueued(self, order: Order, sequence: int) -> None:
        """The order is on disk under `sequence`: deliverable from now on."""
        if order.order_id in self.orders:
            return
        order.sequence = sequence
        self.orders[order.order_id] = order
        self._push(order)

    # -- epochs and fencing (rules 2-4) ----------------------------------------

    def check_replica(self, replica_id: int) -> None:
        if replica_id <= 0:
            raise BadRequest("replica id must be positive")
        if self.replica_ids is not None and replica_id not in self.replica_ids:
            known = ", ".join(str(i) for i in sorted(self.replica_ids))
            raise UnknownReplica(f"replica {replica_id} is not configured ({known})")

    def _fence(self, replica_id: int, epoch: int, now: float, *, alive: bool = True) -> None:
        """Rule 4; `alive`: the call is a sign of life of the leader (rule 3)."""
        self.check_replica(replica_id)
        if epoch != self.epoch or replica_id != self.leader_id or epoch == 0:
            raise StaleEpoch(f"current epoch is {self.epoch}")
        if alive:
            self.leader_active_at = now

    def check_register(self, replica_id: int, now: float) -> None:
        self.check_replica(replica_id)
        idle = now - self.leader_active_at
        if self.leader_id > replica_id and idle < self.failure_timeout_s:
            raise LeaderAlive(
                f"replica {self.leader_id} holds epoch {self.epoch} and was active {idle:.3f}s ago"
            )

    def on_registered(self, replica_id: int, epoch: int, now: float) -> int:
        """The disk granted `epoch` to `replica_id`; how many older leases were voided."""
        self.epoch, self.leader_id, self.leader_active_at = epoch, replica_id, now
        old = [oid for oid, lease in self.leases.items() if lease.epoch < epoch]
        for order_id in old:
            self._release(order_id)
        return len(old)

    # -- leases (rules 5-7) ------------------------------------------------------

    def take(
        self, replica_id: int, epoch: int, now: float, *, again: bool = False
    ) -> tuple[Order, Lease] | None:
        """Lease the highest-priority deliverable order, if any. `again`: a long poll
        taking again after a wait, no new sign of life (its call arrived earlier)."""
        self._fence(replica_id, epoch, now, alive=not again)
        self.expire(now)
        while self._heap:
            _, _, order_id = heapq.heappop(self._heap)
            if not self._deliverable(order_id):
                continue
            order = self.orders[order_id]
            order.deliveries += 1
            lease = Lease(self._lease_ids(), order_id, replica_id, epoch, now + self.lease_s)
            self.leases[order_id] = lease
            return order, lease
        return None

    def take_many(
        self, replica_id: int, epoch: int, now: float, most: int, *, again: bool = False
    ) -> list[tuple[Order, Lease]]:
        """Lease up to `most` orders by priority (`take`, fenced once); [] if none."""
        first = self.take(replica_id, epoch, now, again=again)
        if first is None:
            return []
        taken = [first]
        while len(taken) < most and (more := self.take(replica_id, epoch, now, again=True)):
            taken.append(more)
        return taken

    def renew(self, replica_id: int, epoch: int, order_id: str, lease_id: str, now: float) -> Lease:
        self._fence(replica_id, epoch, now)
        self.expire(now)
        lease = self.leases.get(order_id)
        if lease is None or lease.lease_id != lease_id:
            raise LeaseLost(f"no live lease {lease_id} on order {order_id}")
        lease.expires_at = now + self.lease_s
        return lease

    def check_complete(
        self,
        replica_id: int,
        epoch: int,
        order_id: str,
        lease_id: str,
        outcome: str,
        reason: str,
        now: float,
    ) -> None:
        if outcome not in OUTCOMES:
            raise BadRequest(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
        if len(reason) > MAX_TEXT_CHARS * 2:
            raise BadRequest("reason too long")
        self._fence(replica_id, epoch, now)
        lease = self.leases.get(order_id)
        if lease is not None and lease.lease_id != lease_id:
            raise LeaseLost(f"order {order_id} is leased under another lease")

    def on_completed(self, order_id: str, duplicate: bool) -> None:
        """The execution is on disk (its decision's, or its completion's): the order
        leaves the queue (its heap entry is skipped when it surfaces)."""
        self.orders.pop(order_id, None)
        self.leases.pop(order_id, None)
        if not duplicate:
            self.executed += 1

    def check_decision(self, epoch: int) -> None:
        if epoch < self.epoch:
            raise StaleEpoch(f"current epoch is {self.epoch}")

    def check(self, op: LeaderOp, now: float) -> None:
        """The leader's op, checked by the rules (its refusal is raised): a decision's
        form (BadRequest) and rule 8, or a completion's rules (6, 7)."""
        if isinstance(op, Decide):
            if op.decision not in DECISIONS:
                known = ", ".join(DECISIONS)
                raise BadRequest(f"decision must be one of {known}, not {op.decision!r}")
            if op.epoch <= 0:
                raise BadRequest("a decision needs the leader's epoch")
            if len(op.reason) > MAX_REASON_CHARS:
                raise BadRequest(f"reason longer than {MAX_REASON_CHARS} characters")
            self.check_decision(op.epoch)
        else:
            self.check_complete(
                op.replica_id, op.epoch, op.order_id, op.lease_id, op.outcome, op.reason, now
            )

    def expire(self, now: float) -> int:
        """Make orders whose lease ran out deliverable again; how many."""
        expired = [oid for oid, lease in self.leases.items() if lease.expires_at <= now]
        for order_id in expired:
            self._release(order_id)
        return len(expired)

    def next_expiry(self) -> float | None:
        return min((lease.expires_at for lease in self.leases.values()), default=None)

    # -- the priority order (rule 1) ------------------------------------------------

    def _push(self, order: Order) -> None:
        heapq.heappush(self._heap, (-order.books, order.sequence, order.order_id))

    def _deliverable(self, order_id: str) -> bool:
        return order_id in self.orders and order_id not in self.leases

    def _release(self, order_id: str) -> None:
        del self.leases[order_id]
        order = self.orders.get(order_id)
        if order is not None:
            self._push(order)

    def peek(self, n: int) -> list[Order]:
        """The next `n` deliverable orders, highest priority first."""
        live = [entry for entry in self._heap if self._deliverable(entry[2])]
        return [self.orders[entry[2]] for entry in heapq.nsmallest(n, set(live))]

    def oldest(self) -> Order | None:
        """The order waiting longest (the lowest sequence: `orders` keeps arrival order)."""
        return next(iter(self.orders.values()), None)
