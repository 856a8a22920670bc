"""The queue's in-memory side: priority order and leases (no I/O, no clock).

Orders waiting to be executed live here, mirrored from the database. Priority
is `(-books, sequence)`: more books first, then earlier arrival by the
sequence number the queue assigned. Dequeue hands out a lease; an expired
lease puts the order back where its priority says (so ahead of any
lower-priority order). Leases are never persisted: after a restart every
order is deliverable again (at-least-once delivery; the exactly-once effect
comes from completing by order id).
"""

from __future__ import annotations

import heapq
import uuid
from dataclasses import dataclass


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

    @property
    def priority(self) -> tuple[int, int]:
        return (-self.books, self.sequence)


@dataclass
class Lease:
    lease_id: str
    order_id: str
    replica_id: int
    epoch: int
    expires_at: float


class QueueState:
    """Waiting orders by priority, and the leases on them. Times are passed in."""

    def __init__(self) -> None:
        self.orders: dict[str, Order] = {}  # every order not yet executed
        self.leases: dict[str, Lease] = {}  # order id -> its lease
        # (-books, sequence, order id) of deliverable orders; entries of
        # orders since leased or executed are skipped when they surface.
        self._heap: list[tuple[int, int, str]] = []

    @property
    def depth(self) -> int:
        return len(self.orders)

    def add(self, order: Order) -> None:
        if order.order_id in self.orders:
            return
        self.orders[order.order_id] = order
        self._push(order)

    def _push(self, order: Order) -> None:
        heapq.heappush(self._heap, (-order.books, order.sequence, order.order_id))

    def _deliverable(self, order_id: str) -> bool:
        return order_id in self.orders and order_id not in self.leases

    def take(
        self, now: float, replica_id: int, epoch: int, lease_s: float
    ) -> tuple[Order, Lease] | None:
        """Lease the highest-priority deliverable order, if any."""
        self.expire(now)
        while self._heap:
            _, _, order_id = heapq.heappop(self._heap)
            if not self._deliverable(order_id):
                continue
            order = self.orders[order_id]
            order.deliveries += 1
            lease = Lease(uuid.uuid4().hex, order_id, replica_id, epoch, now + lease_s)
            self.leases[order_id] = lease
            return order, lease
        return None

    def expire(self, now: float) -> int:
        """Make orders whose lease ran out deliverable again; how many."""
        expired = [oid for oid, lease in self.leases.items() if lease.expires_at <= now]
        for order_id in expired:
            self._release(order_id)
        return len(expired)

    def release_older_than(self, epoch: int) -> int:
        """Void every lease granted under an epoch older than `epoch`."""
        old = [oid for oid, lease in self.leases.items() if lease.epoch < epoch]
        for order_id in old:
            self._release(order_id)
        return len(old)

    def _release(self, order_id: str) -> None:
        del self.leases[order_id]
        order = self.orders.get(order_id)
        if order is not None:
            self._push(order)

    def renew(self, order_id: str, lease_id: str, now: float, lease_s: float) -> Lease | None:
        self.expire(now)
        lease = self.leases.get(order_id)
        if lease is None or lease.lease_id != lease_id:
            return None
        lease.expires_at = now + lease_s
        return lease

    def may_complete(self, order_id: str, lease_id: str) -> bool:
        """A completion is accepted unless another lease holds the order.

        (An order whose lease expired but was not handed out again may still
        be completed by the same epoch; the epoch check guards the rest.)
        """
        lease = self.leases.get(order_id)
        return lease is None or lease.lease_id == lease_id

    def remove(self, order_id: str) -> None:
        """The order was executed: forget it (its heap entry is skipped later)."""
        self.orders.pop(order_id, None)
        self.leases.pop(order_id, None)

    def next_expiry(self) -> float | None:
        return min((lease.expires_at for lease in self.leases.values()), default=None)

    def peek(self, n: int) -> list[Order]:
        """The next `n` deliverable orders, highest priority first."""
        live = [entry for entry in self._heap if self._deliverable(entry[2])]
        return [self.orders[entry[2]] for entry in heapq.nsmallest(n, set(live))]
