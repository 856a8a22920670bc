"""One operation of the queue store's batch methods, as a test makes it: the
operation's outcome, or its refusal raised (the store answers batches only, as
the service calls it)."""

from __future__ import annotations

from collections.abc import Sequence

from bookstore.order_queue import decisions
from bookstore.order_queue.db import Execution
from bookstore.order_queue.disk import raised
from bookstore.order_queue.state import Completion, Decide, Item, Lease, Order
from bookstore.order_queue.store import QueueStore


async def enqueue(
    store: QueueStore,
    order_id: str,
    items: Sequence[Item],
    customer_name: str,
    payment_token: str = "",
    amount_cents: int = 0,
    trace_context: str = "",
) -> tuple[int, bool]:
    """(sequence, duplicate) once the order is on disk."""
    order = store.order(order_id, items, customer_name, payment_token, amount_cents, trace_context)
    (enqueued,) = await store.enqueue_all([order])
    return enqueued


async def dequeue(
    store: QueueStore, replica_id: int, epoch: int, wait_s: float
) -> tuple[Order, Lease] | None:
    """The highest-priority order's lease, waiting up to `wait_s` for one."""
    taken = await store.dequeue_many(replica_id, epoch, wait_s, 1)
    return taken[0] if taken else None


async def complete(
    store: QueueStore,
    replica_id: int,
    epoch: int,
    lease_id: str,
    order_id: str,
    outcome: str = "executed",
    reason: str = "",
    amount_cents: int = 0,
) -> tuple[Execution, bool]:
    completion = Completion(replica_id, epoch, lease_id, order_id, outcome, reason, amount_cents)
    (done,) = await store.leader_ops([completion])
    result: tuple[Execution, bool] = raised(done)
    return result


async def log_decision(
    store: QueueStore,
    order_id: str,
    decision: str,
    epoch: int,
    reason: str,
    amount_cents: int = 0,
    customer_reason: str = "",
) -> decisions.LoggedDecision:
    decide = Decide(order_id, decision, epoch, reason, amount_cents, customer_reason)
    (logged,) = await store.leader_ops([decide])
    result: decisions.LoggedDecision = raised(logged)
    return result
