"""The order queue's adapter: a clock, the disk and the waiters around `state.py`.

The rules (priority, leases, epochs, fencing) live in the pure state machine
`QueueState`; the file behind its database thread and group commit in
`disk.py`. This module ties them together and adds long polls, lease expiry
timers and the execution feed. Every operation that changes something reads
in the same order:

    check it with the rules -> write it and await the durable commit
    -> apply it to the state -> answer

so nothing is acknowledged before it is on disk and memory never runs ahead of
the disk. The write and the apply run to their end even if the caller stops
waiting (`_to_the_end`): a cancelled RPC cannot leave a committed write out of
memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from bookstore.order_queue import decisions
from bookstore.order_queue.db import Database, Execution, Op, StorageFailure, wall_now
from bookstore.order_queue.disk import QueueDisk, stop_process
from bookstore.order_queue.state import (
    Decide,
    Item,
    LeaderOp,
    Lease,
    Limits,
    Order,
    QueueError,
    QueueState,
    UnknownOrder,
)
from bookstore.telemetry import metrics

log = logging.getLogger(__name__)
T = TypeVar("T")

SUBSCRIBER_BACKLOG = 10_000


@dataclass(frozen=True)
class OrderView:
    state: str  # "queued" | "leased" | "executed"
    books: int
    sequence: int
    execution: Execution | None = None


@dataclass(frozen=True)
class StatusView:
    depth: int
    next: list[Order]
    epoch: int
    leader_id: int
    leased: int
    executed: int
    pid: int


async def _to_the_end(work: Coroutine[Any, Any, T]) -> T:
    """Await `work`, which runs to its end even if this caller is cancelled: a write
    that reached the disk must reach the state too. (A refusal nobody waits for any
    more is dropped quietly.)"""
    task = asyncio.ensure_future(work)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    return await asyncio.shield(task)


class QueueStore:
    def __init__(
        self,
        path: Path,
        *,
        lease_s: float = 2.0,
        group_commit_max: int = 256,
        failure_timeout_s: float = 0.5,
        limits: Limits | None = None,
        replica_ids: Iterable[int] | None = None,
        retention_s: float = 24 * 3600.0,
        sweep_interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = wall_now,
        on_fatal: Callable[[BaseException], None] = stop_process,
    ) -> None:
        self.state = QueueState(
            lease_s=lease_s,
            failure_timeout_s=failure_timeout_s,
            limits=limits,
            replica_ids=replica_ids,
        )
        self.disk = QueueDisk(
            path,
            group_commit_max=group_commit_max,
            retention_s=retention_s,
            sweep_interval_s=sweep_interval_s,
            wall_clock=wall_clock,
            on_fatal=on_fatal,
        )
        self.clock = clock
        self.wall_clock = wall_clock
        self._registering = asyncio.Lock()
        self._changed = asyncio.Event()
        self._expiry: asyncio.TimerHandle | None = None
        self._subscribers: set[asyncio.Queue[Execution | None]] = set()

    async def open(self) -> None:
        loaded = await self.disk.open()
        self.state.restore(loaded.epoch, loaded.leader_id, loaded.executed, loaded.queued)
        s = self.state
        log.info(
            "queue open path=%s epoch=%d leader=%d queued=%d executed=%d",
            self.disk.path,
            s.epoch,
            s.leader_id,
            s.depth,
            s.executed,
        )

    async def close(self) -> None:
        await self.disk.close()
        if self._expiry is not None:
            self._expiry.cancel()
        for queue in self._subscribers:
            queue.put_nowait(None)

    # -- enqueue ----------------------------------------------------------------------

    def order(
        self,
        order_id: str,
        items: Sequence[Item],
        customer_name: str,
        payment_token: str = "",
        amount_cents: int = 0,
        trace_context: str = "",
    ) -> Order:
        """A new order checked by the rules (BAD_REQUEST), stamped with its arrival."""
        order = self.state.new_order(order_id, items, customer_name, payment_token, amount_cents)
        order.trace_context = trace_context
        order.enqueued_at = self.wall_clock().timestamp()
        return order

    async def enqueue_all(self, orders: Sequence[Order]) -> list[tuple[int, bool]]:
        """Each order's (sequence, duplicate), all written in one transaction; once it
        is on disk the new orders are deliverable (in their order: sequences ascend)."""
        return await _to_the_end(self._enqueue_all(orders))

    async def _enqueue_all(self, orders: Sequence[Order]) -> list[tuple[int, bool]]:
        ops = [functools.partial(Database.enqueue, order=order) for order in orders]
        enqueued: list[tuple[int, bool]] = await self.disk.write_all(ops)
        for order, (sequence, duplicate) in zip(orders, enqueued, strict=True):
            if not duplicate:
                self.state.on_enqueued(order, sequence)
        self._notify()
        return enqueued

    # -- the leader: register, dequeue, renew --------------------------------------

    async def register_leader(self, replica_id: int) -> int:
        """A new epoch for `replica_id`, on disk before it is returned."""
        return await _to_the_end(self._register(replica_id))

    async def _register(self, replica_id: int) -> int:
        # One registration at a time, so the LEADER_ALIVE check always sees the
        # outcome of the one before it (two racing candidates cannot both pass).
        async with self._registering:
            self.state.check_register(replica_id, self.clock())
            register = functools.partial(Database.register, replica_id=replica_id)
            epoch: int = await self.disk.write(register)
            voided = self.state.on_registered(replica_id, epoch, self.clock())
            log.info("leader registered replica=%d epoch=%d voided=%d", replica_id, epoch, voided)
            self._schedule_expiry()
            self._notify()
            return epoch

    async def dequeue_many(
        self, replica_id: int, epoch: int, wait_s: float, max_orders: int
    ) -> list[tuple[Order, Lease]]:
        """Lease up to `max_orders` orders, by priority, waiting up to `wait_s` for the
        first; [] if none came. A change wakes every waiting long poll; the leader
        keeps one, which takes every order waiting then (up to its `max_orders`)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, wait_s)
        again = False
        while True:
            self._expire()
            # Fenced every time round: a new leader may have registered meanwhile.
            taken = self.state.take_many(replica_id, epoch, self.clock(), max_orders, again=again)
            if taken:
                self._schedule_expiry()
                return taken
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
            again = True

    async def renew(self, replica_id: int, epoch: int, lease_id: str, order_id: str) -> float:
        """The lease's new length once renewed (refused: STALE_EPOCH, LEASE_LOST)."""
        self._expire()
        self.state.renew(replica_id, epoch, order_id, lease_id, self.clock())
        self._schedule_expiry()
        return self.state.lease_s

    # -- the leader: completions and decisions ---------------------------------------

    async def leader_ops(self, ops: Sequence[LeaderOp]) -> list[Any]:
        """Each op's outcome, in order: (execution, duplicate), the logged decision, or
        its refusal (a QueueError). The ops the rules accept are written in one
        transaction; once it is on disk the orders executed by it (a first decision,
        or a completion without one) leave the queue and go out on the feed."""
        return await _to_the_end(self._leader_ops(ops))

    async def _leader_ops(self, ops: Sequence[LeaderOp]) -> list[Any]:
        outcomes: list[Any] = []
        writes: dict[int, Op] = {}  # index of the op -> its write
        for index, op in enumerate(ops):
            try:
                writes[index] = self._checked(op)
                outcomes.append(None)
            except QueueError as exc:
                outcomes.append(exc)
        results = await self.disk.write_all(list(writes.values()))
        for index, result in zip(writes, results, strict=True):
            if isinstance(result, decisions.Decided):
                if result.execution is not None:
                    self._executed(result.execution)
                result = result.logged
            elif not isinstance(result, QueueError):
                record, duplicate, created = result
                if created:
                    self._executed(record)
                result = (record, duplicate)
            outcomes[index] = result
        return outcomes

    def _checked(self, op: LeaderOp) -> Op:
        """The op's write, once the rules accept it (else its refusal is raised)."""
        self.state.check(op, self.clock())
        if isinstance(op, Decide):
            return functools.partial(decisions.log, **asdict(op))
        return functools.partial(Database.complete, c=op)

    def _executed(self, record: Execution) -> None:
        """The order's execution is on disk: it leaves the queue, and the feed has it."""
        self.state.on_completed(record.order_id, duplicate=False)
        self._schedule_expiry()
        metrics.EXECUTIONS.labels(str(record.executor)).inc()
        self._publish(record)

    # -- reads ----------------------------------------------------------------------

    def _db(self) -> Database:
        if self.disk.db is None:
            raise StorageFailure("the queue is closed")
        return self.disk.db

    async def get_order(self, order_id: str) -> OrderView:
        order = self.state.orders.get(order_id)
        if order is not None:
            leased = order_id in self.state.leases
            return OrderView("leased" if leased else "queued", order.books, order.sequence)
        db = self._db()

        def read() -> tuple[tuple[int, int, str] | None, Execution | None]:
            return db.order_row(order_id), db.execution(order_id)

        row, execution = await self.disk.read(read)
        if row is None:
            raise UnknownOrder(f"no order {order_id}")
        books, sequence, state = row
        return OrderView(state, books, sequence, execution)

    async def get_decision(self, order_id: str) -> decisions.LoggedDecision | None:
        return await self.disk.read(decisions.get, self._db(), order_id)

    async def list_decisions(
        self, limit: int
    ) -> tuple[list[decisions.LoggedDecision], list[decisions.LoggedDecision]]:
        """(decided orders not yet executed, the `limit` most recent decisions)."""
        db = self._db()

        def read() -> tuple[list[decisions.LoggedDecision], list[decisions.LoggedDecision]]:
            return decisions.pending(db, decisions.MAX_LISTED), decisions.recent(db, limit)

        return await self.disk.read(read)

    def status(self, next_n: int = 10) -> StatusView:
        self._expire()
        s = self.state
        return StatusView(
            depth=s.depth,
            next=s.peek(next_n),
            epoch=s.epoch,
            leader_id=s.leader_id,
            leased=len(s.leases),
            executed=s.executed,
            pid=os.getpid(),
        )

    def oldest_wait_s(self) -> float:
        """How long the oldest order not yet executed has waited (0: none)."""
        oldest = self.state.oldest()
        if oldest is None:
            return 0.0
        return max(0.0, self.wall_clock().timestamp() - oldest.enqueued_at)

    # -- waking long polls and lease expiry --------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _schedule_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        at = self.state.next_expiry()
        if at is None:
            return
        delay = max(0.0, at - self.clock()) + 0.001
        self._expiry = asyncio.get_running_loop().call_later(delay, self._on_expiry)

    def _on_expiry(self) -> None:
        self._expiry = None
        self._expire()
        self._schedule_expiry()

    def _expire(self) -> None:
        """Reclaim expired leases, waking long polls if any order came back."""
        if expired := self.state.expire(self.clock()):
            metrics.LEASE_EXPIRIES.inc(expired)
            self._notify()

    # -- the execution feed -----------------------------------------------------

    def _publish(self, record: Execution) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(record)
            except asyncio.QueueFull:
                # Too slow a reader: end its stream; it reconnects and re-checks.
                self._subscribers.discard(queue)
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                queue.put_nowait(None)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Execution | None]]:
        """Every execution committed from now on; None means the feed ended."""
        queue: asyncio.Queue[Execution | None] = asyncio.Queue(maxsize=SUBSCRIBER_BACKLOG)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)
