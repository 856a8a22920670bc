"""The order queue: durable enqueue, leased dequeue, epoch fencing, group commit.

Every write (enqueue, completion, decision, epoch bump) goes to ONE writer
task, which takes whatever has accumulated (up to `group_commit_max` writes),
runs it in one SQLite transaction on the database thread (one fsync), applies
the effects to the in-memory state in order, and only then acknowledges each
caller. Under load many acknowledgements share one fsync; none is given before
its write is on disk. The writes of one batch call (`together`) are one unit
of it: they always share a transaction, whatever else is waiting. A commit
that fails is fatal: the process stops rather than acknowledge anything it
could not make durable. A full disk is the one exception (see
`db._is_disk_full`): the batch is refused with DiskFull, the queue keeps
serving reads, and writes succeed again once there is space.

Retention: every `sweep_interval_s` the writer deletes orders executed more
than `retention_s` ago, in small transactions between the other writes.

Fencing: RegisterLeader bumps and persists the epoch before it replies and
voids every lease of older epochs. Dequeue, RenewLease and Complete must
carry the current epoch (and the leader's id), else STALE_EPOCH and nothing
changes. A registration is refused (LEADER_ALIVE) while a higher replica id
holds the epoch and was active within the failure timeout. Only the configured
replica ids (ORDER_EXECUTOR_ADDRESSES) may register, dequeue, renew or
complete (UNKNOWN_REPLICA): a foreign id could otherwise take the epoch from
the real leader, and a huge one would win every LEADER_ALIVE check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from bookstore.order_queue import decisions
from bookstore.order_queue.db import (
    OUTCOMES,
    BadRequest,
    Database,
    DiskFull,
    Execution,
    LeaderAlive,
    LeaseLost,
    Op,
    QueueError,
    StaleEpoch,
    StorageFailure,
    UnknownOrder,
    UnknownReplica,
    wall_now,
)
from bookstore.order_queue.state import Item, Lease, Order, QueueState
from bookstore.telemetry import metrics
from bookstore.timestamps import utc_iso

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_ID_CHARS = 128
MAX_TEXT_CHARS = 256
MAX_AMOUNT_CENTS = 10**12
SUBSCRIBER_BACKLOG = 10_000
SWEEP_CHUNK = 500  # orders deleted per transaction by the retention sweep


@dataclass(frozen=True)
class Limits:
    max_items: int = 100
    max_quantity: int = 100


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


def validate_order(
    order_id: str,
    items: Sequence[Item],
    customer_name: str,
    limits: Limits,
    payment_token: str = "",
    amount_cents: int = 0,
) -> Order:
    """A new order with its priority computed here, or BadRequest."""
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


def _die(exc: BaseException) -> None:
    log.critical("queue storage failed, stopping: %s", exc)
    os._exit(70)


@dataclass(frozen=True)
class Planned:
    """A write checked and ready: `op` runs in the transaction; `on_commit`, given its
    result, applies it to the in-memory state once the transaction is on disk."""

    op: Op
    on_commit: Callable[[Any], None] | None = None


@dataclass
class _Write:
    op: Op
    on_commit: Callable[[Any], None] | None
    future: asyncio.Future[Any]


_Unit = list[_Write]  # written in one transaction, never split


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
        on_fatal: Callable[[BaseException], None] = _die,
    ) -> None:
        self.path = path
        self.lease_s = lease_s
        self.group_commit_max = max(1, group_commit_max)
        self.failure_timeout_s = failure_timeout_s
        self.limits = limits or Limits()
        # None: any positive id (unit tests); the service passes the configured ones.
        self.replica_ids = None if replica_ids is None else frozenset(replica_ids)
        self.retention_s = retention_s
        self.sweep_interval_s = sweep_interval_s
        self.clock = clock
        self.wall_clock = wall_clock
        self._sweeper: asyncio.Task[None] | None = None
        self.swept = 0  # orders the retention sweep deleted since open
        self.disk_full = False  # the last write found no space
        self.on_fatal = on_fatal
        self.state = QueueState()
        self.epoch = 0
        self.leader_id = 0
        self.executed = 0
        self._leader_active_at = float("-inf")
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="queue-db")
        self._db: Database | None = None
        self._writes: asyncio.Queue[_Unit | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._registering = asyncio.Lock()
        self._changed = asyncio.Event()
        self._expiry: asyncio.TimerHandle | None = None
        self._subscribers: set[asyncio.Queue[Execution | None]] = set()
        self.failed: BaseException | None = None
        self.commits = 0  # transactions committed (each one fsync)

    # -- lifecycle ------------------------------------------------------------

    async def open(self) -> None:
        self._db = await self._in_thread(Database, self.path, self.wall_clock)
        loaded = await self._in_thread(self._db.load)
        self.epoch, self.leader_id, self.executed = loaded.epoch, loaded.leader_id, loaded.executed
        for order in loaded.queued:
            self.state.add(order)
        self._writer = asyncio.create_task(self._write_loop(), name="queue-writer")
        self._writer.add_done_callback(self._writer_ended)
        if self.sweep_interval_s > 0:
            self._sweeper = asyncio.create_task(self._sweep_loop(), name="queue-sweeper")
        log.info(
            "queue open path=%s epoch=%d leader=%d queued=%d executed=%d",
            self.path,
            self.epoch,
            self.leader_id,
            self.state.depth,
            self.executed,
        )

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        if self._writer is not None:
            await self._writes.put(None)
            with contextlib.suppress(Exception):
                await self._writer
            self._writer = None
        if self._expiry is not None:
            self._expiry.cancel()
        for queue in self._subscribers:
            queue.put_nowait(None)
        if self._db is not None:
            await self._in_thread(self._db.close)
            self._db = None
        self._thread.shutdown(wait=True)

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    # -- the writer (group commit) ----------------------------------------------

    def _submit(self, planned: Sequence[Planned]) -> list[asyncio.Future[Any]]:
        """Hand `planned` to the writer as one unit; a future per write."""
        if self.failed is not None:
            raise StorageFailure(str(self.failed))
        loop = asyncio.get_running_loop()
        unit = [_Write(p.op, p.on_commit, loop.create_future()) for p in planned]
        self._writes.put_nowait(unit)
        return [w.future for w in unit]

    async def _write(self, op: Op, on_commit: Callable[[Any], None] | None = None) -> Any:
        (future,) = self._submit([Planned(op, on_commit)])
        return await future

    async def write(self, planned: Planned) -> Any:
        """A planned write's result once it is on disk (a refusal is raised)."""
        return await self._write(planned.op, planned.on_commit)

    async def together(self, plans: Sequence[Callable[[], Planned]]) -> list[Any]:
        """A batch call's writes: each plan checks its request (a QueueError it raises is
        that request's outcome, and nothing of it is written); the planned writes then go
        in one transaction. Each request's result or error, in order."""
        outcomes: list[Any] = []
        planned: dict[int, Planned] = {}  # index of the request -> its write
        for index, plan in enumerate(plans):
            try:
                planned[index] = plan()
                outcomes.append(None)
            except QueueError as exc:
                outcomes.append(exc)
        if planned:
            futures = self._submit(list(planned.values()))
            results = await asyncio.gather(*futures, return_exceptions=True)
            for index, result in zip(planned, results, strict=True):
                outcomes[index] = result
        return outcomes

    def _writer_ended(self, task: asyncio.Task[None]) -> None:
        """A writer that dies of an unexpected error would leave every later write
        waiting forever behind a SERVING health: treat it as fatal instead."""
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        assert exc is not None
        log.critical("the queue's writer failed: %r", exc)
        self.failed = exc
        self.on_fatal(exc)

    async def _write_loop(self) -> None:
        while True:
            first = await self._writes.get()
            if first is None:
                return
            batch = list(first)
            while len(batch) < self.group_commit_max and not self._writes.empty():
                nxt = self._writes.get_nowait()
                if nxt is None:
                    self._writes.put_nowait(None)  # stop after this batch
                    break
                batch += nxt  # a whole unit, even past group_commit_max
            assert self._db is not None
            try:
                results = await self._in_thread(self._db.run_batch, [w.op for w in batch])
            except DiskFull as exc:
                if not self.disk_full:
                    log.error("queue writes refused until there is space: %s", exc)
                self.disk_full = True
                for w in batch:
                    if not w.future.done():
                        w.future.set_exception(DiskFull(str(exc)))
                continue
            except Exception as exc:
                self.failed = exc
                for w in batch:
                    if not w.future.done():
                        w.future.set_exception(StorageFailure(str(exc)))
                self.on_fatal(exc)
                return
            self.commits += 1
            if self.disk_full:
                self.disk_full = False
                log.warning("queue writes succeed again: the disk has space")
            for w, result in zip(batch, results, strict=True):
                if isinstance(result, Exception):
                    # A caller whose RPC was cancelled meanwhile no longer listens.
                    if not w.future.done():
                        w.future.set_exception(result)
                    continue
                if w.on_commit is not None:
                    w.on_commit(result)
                if not w.future.done():
                    w.future.set_result(result)

    # -- retention ----------------------------------------------------------------

    async def sweep(self) -> int:
        """Delete the orders executed more than `retention_s` ago; how many."""
        cutoff = self.wall_clock() - timedelta(seconds=self.retention_s)
        before = utc_iso(cutoff.timestamp())
        total = 0
        while True:
            n: int = await self._write(lambda db: db.sweep(before, SWEEP_CHUNK))
            total += n
            if n < SWEEP_CHUNK:
                break
        self.swept += total
        if total:
            log.info("retention sweep deleted=%d executed_before=%s", total, before)
        return total

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval_s)
            try:
                await self.sweep()
            except DiskFull:
                continue  # deleting needs log space too: next time
            except StorageFailure:
                return  # fatal, handled by the writer

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

    # -- fencing ----------------------------------------------------------------

    def _check_replica(self, replica_id: int) -> None:
        if replica_id <= 0:
            raise BadRequest("replica id must be positive")
        if self.replica_ids is not None and replica_id not in self.replica_ids:
            known = ", ".join(str(i) for i in sorted(self.replica_ids))
            raise UnknownReplica(f"replica {replica_id} is not configured ({known})")

    def _check_epoch(self, replica_id: int, epoch: int) -> None:
        self._check_replica(replica_id)
        if epoch != self.epoch or replica_id != self.leader_id or epoch == 0:
            raise StaleEpoch(f"current epoch is {self.epoch}")
        self._leader_active_at = self.clock()

    # -- operations -------------------------------------------------------------

    async def enqueue(
        self,
        order_id: str,
        items: Sequence[Item],
        customer_name: str,
        payment_token: str = "",
        amount_cents: int = 0,
        on_queued: Callable[[], None] | None = None,
    ) -> tuple[int, bool]:
        """(sequence, duplicate) once the order is on disk."""
        planned = self.plan_enqueue(
            order_id, items, customer_name, payment_token, amount_cents, on_queued
        )
        result: tuple[int, bool] = await self.write(planned)
        return result

    def plan_enqueue(
        self,
        order_id: str,
        items: Sequence[Item],
        customer_name: str,
        payment_token: str = "",
        amount_cents: int = 0,
        on_queued: Callable[[], None] | None = None,
    ) -> Planned:
        """The enqueue's write (its result: (sequence, duplicate)), or BadRequest.

        `on_queued` runs once a new order is on disk, before any dequeue can take it."""
        order = validate_order(
            order_id, items, customer_name, self.limits, payment_token, amount_cents
        )

        def on_commit(result: tuple[int, bool]) -> None:
            sequence, duplicate = result
            if not duplicate:
                order.sequence = sequence
                if on_queued is not None:
                    on_queued()
                self.state.add(order)
                self._notify()

        return Planned(lambda db: db.enqueue(order), on_commit)

    async def register_leader(self, replica_id: int) -> int:
        self._check_replica(replica_id)
        # One registration at a time, so the LEADER_ALIVE check always sees the
        # outcome of the one before it (two racing candidates cannot both pass).
        async with self._registering:
            idle = self.clock() - self._leader_active_at
            if self.leader_id > replica_id and idle < self.failure_timeout_s:
                raise LeaderAlive(
                    f"replica {self.leader_id} holds epoch {self.epoch}"
                    f" and was active {idle:.3f}s ago"
                )

            def on_commit(epoch: int) -> None:
                self.epoch, self.leader_id = epoch, replica_id
                self._leader_active_at = self.clock()
                voided = self.state.release_older_than(epoch)
                log.info(
                    "leader registered replica=%d epoch=%d voided=%d", replica_id, epoch, voided
                )
                self._schedule_expiry()
                self._notify()

            epoch: int = await self._write(lambda db: db.register(replica_id), on_commit)
            return epoch

    async def dequeue(
        self, replica_id: int, epoch: int, wait_s: float
    ) -> tuple[Order, Lease] | None:
        """Lease the highest-priority order, waiting up to `wait_s` for one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, wait_s)
        self._check_epoch(replica_id, epoch)
        while True:
            if epoch != self.epoch or replica_id != self.leader_id:
                raise StaleEpoch(f"current epoch is {self.epoch}")
            self._expire()
            taken = self.state.take(self.clock(), replica_id, epoch, self.lease_s)
            if taken is not None:
                self._schedule_expiry()
                return taken
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def renew(self, replica_id: int, epoch: int, lease_id: str, order_id: str) -> float:
        self._check_epoch(replica_id, epoch)
        self._expire()
        lease = self.state.renew(order_id, lease_id, self.clock(), self.lease_s)
        if lease is None:
            raise LeaseLost(f"no live lease {lease_id} on order {order_id}")
        self._schedule_expiry()
        return self.lease_s

    async def complete(
        self,
        replica_id: int,
        epoch: int,
        lease_id: str,
        order_id: str,
        outcome: str = "executed",
        reason: str = "",
        amount_cents: int = 0,
    ) -> tuple[Execution, bool]:
        """Record the execution (or return the existing one, duplicate=True):
        executed, or rejected with the reason (its transaction aborted)."""
        planned = self.plan_complete(
            replica_id, epoch, lease_id, order_id, outcome, reason, amount_cents
        )
        result: tuple[Execution, bool] = await self.write(planned)
        return result

    def plan_complete(
        self,
        replica_id: int,
        epoch: int,
        lease_id: str,
        order_id: str,
        outcome: str = "executed",
        reason: str = "",
        amount_cents: int = 0,
    ) -> Planned:
        """The completion's write (its result: (execution, duplicate)), or the refusal
        (BAD_REQUEST, UNKNOWN_REPLICA, STALE_EPOCH, LEASE_LOST)."""
        if outcome not in OUTCOMES:
            raise BadRequest(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
        if len(reason) > MAX_TEXT_CHARS * 2:
            raise BadRequest("reason too long")
        self._check_epoch(replica_id, epoch)
        if order_id in self.state.orders and not self.state.may_complete(order_id, lease_id):
            raise LeaseLost(f"order {order_id} is leased under another lease")

        def on_commit(result: tuple[Execution, bool]) -> None:
            record, duplicate = result
            if order_id in self.state.orders:
                self.state.remove(order_id)
                self._schedule_expiry()
            if not duplicate:
                self.executed += 1
                self._publish(record)

        return Planned(
            lambda db: db.complete(order_id, replica_id, epoch, outcome, reason, amount_cents),
            on_commit,
        )

    async def get_order(self, order_id: str) -> OrderView:
        order = self.state.orders.get(order_id)
        if order is not None:
            leased = order_id in self.state.leases
            return OrderView("leased" if leased else "queued", order.books, order.sequence)
        assert self._db is not None
        db = self._db

        def read() -> tuple[tuple[int, int, str] | None, Execution | None]:
            return db.order_row(order_id), db.execution(order_id)

        row, execution = await self._in_thread(read)
        if row is None:
            raise UnknownOrder(f"no order {order_id}")
        books, sequence, state = row
        return OrderView(state, books, sequence, execution)

    # -- the coordinator log (decisions.py) ----------------------------------------

    async def log_decision(
        self, order_id: str, decision: str, epoch: int, reason: str
    ) -> decisions.LoggedDecision:
        """The first decision logged for the order, once it is on disk."""
        planned = self.plan_log_decision(order_id, decision, epoch, reason)
        logged: decisions.LoggedDecision = await self.write(planned)
        return logged

    def plan_log_decision(self, order_id: str, decision: str, epoch: int, reason: str) -> Planned:
        """The decision's write (its result: the logged decision), or the refusal."""
        decisions.validate(decision, epoch, reason)
        if epoch < self.epoch:
            raise StaleEpoch(f"current epoch is {self.epoch}")
        return Planned(lambda db: decisions.log(db, order_id, decision, epoch, reason))

    async def get_decision(self, order_id: str) -> decisions.LoggedDecision | None:
        assert self._db is not None
        return await self._in_thread(decisions.get, self._db, order_id)

    async def list_decisions(
        self, limit: int
    ) -> tuple[list[decisions.LoggedDecision], list[decisions.LoggedDecision]]:
        """(decided orders not yet executed, the `limit` most recent decisions)."""
        assert self._db is not None
        db = self._db

        def read() -> tuple[list[decisions.LoggedDecision], list[decisions.LoggedDecision]]:
            return decisions.pending(db, decisions.MAX_LISTED), decisions.recent(db, limit)

        return await self._in_thread(read)

    def status(self, next_n: int = 10) -> StatusView:
        self._expire()
        return StatusView(
            depth=self.state.depth,
            next=self.state.peek(next_n),
            epoch=self.epoch,
            leader_id=self.leader_id,
            leased=len(self.state.leases),
            executed=self.executed,
            pid=os.getpid(),
        )

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
