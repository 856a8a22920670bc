"""The leader's work: what a replica does while it leads with an epoch.

`service.py`'s `Executor` runs the Bully node and says when this replica leads
(`Leader`); its work loop (the feeder) then:

- first, once per epoch, recovers: every order with a logged decision that is
  not yet finished is finished (its decision resent to the participants, as a
  new coordinator that reads the log first) and completed;
- then one Dequeue long poll at a time leases as many orders as there are free
  slots (of `execution_concurrency`), and each order runs in a task of its own:
  the order's two-phase commit (`transaction.py`;
  txn id = order id, epoch = mine) -> Complete with the outcome (executed, or
  rejected with the reason), the lease and the epoch. Concurrent orders'
  Completes and logged decisions share LeaderBatch calls
  (`order_queue.client.LeaderCalls`), each fenced on its own.

The logged decision is the order's commit point: the queue records the order
executed (or rejected) with it and its customer is answered then. The
Complete that follows the participants' acknowledgements finishes the
decision, so that no later leader redrives it; until then, whatever happens
to this replica, the next leader's recovery finishes it.

A queue refusal of my epoch, or a participant's, goes to the `Leader` (which
steps down); so does a queue unreachable for too long. An order enqueued
without a payment token and amount (the queue's own tests and benchmarks, which
run without the books database and payment) is completed as executed without a
transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import grpc
from opentelemetry.trace import SpanKind

from bookstore import grpcutil
from bookstore.bounded import BoundedMapping
from bookstore.catalogue import Catalogue
from bookstore.commitment.participant import Decision
from bookstore.order_executor.transaction import TwoPhaseCommit, Txn
from bookstore.order_queue.client import LeaderCalls
from bookstore.pb import common_pb2, queue_pb2, queue_pb2_grpc
from bookstore.settings import Settings
from bookstore.telemetry import propagation

log = logging.getLogger(__name__)
_TRACER = propagation.tracer(__name__)

DEQUEUE_WAIT_MS = 250
REMEMBERED_ORDERS = 10_000
MAX_PENDING_LISTED = 100  # the queue's cap on ListDecisions' pending list


class Leader(Protocol):
    """The replica, as its work sees it (service.py's `Executor`)."""

    replica_id: int

    @property
    def epoch(self) -> int: ...

    async def leading(self) -> int:
        """Wait until this replica leads with an epoch; that epoch."""
        ...

    def queue_failed(self, exc: grpc.aio.AioRpcError, epoch: int) -> bool:
        """Report a failed queue call made under `epoch`; True: stop what it was for."""
        ...

    def queue_answered(self) -> None: ...

    def fenced(self, epoch: int, reason: str) -> None:
        """`epoch` was refused: step down if it is still mine."""
        ...

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]: ...


class Work:
    """The work loops' shared state: orders in flight here, the epoch recovered."""

    def __init__(
        self,
        leader: Leader,
        settings: Settings,
        queue: queue_pb2_grpc.OrderQueueAsyncStub,
        commit: TwoPhaseCommit,
        leader_calls: LeaderCalls,
        catalogue: Catalogue,
        clock: Callable[[], float],
    ) -> None:
        self.leader = leader
        self.settings = settings
        self.queue = queue
        self.commit = commit
        self.leader_calls = leader_calls
        self.catalogue = catalogue
        self.clock = clock
        self.executed = 0
        self._done: BoundedMapping[str, None] = BoundedMapping(REMEMBERED_ORDERS)
        self._inflight: set[str] = set()  # orders whose transaction runs here now
        self._recovered_epoch = 0  # the epoch whose in-doubt orders are finished
        self._running: set[asyncio.Task[None]] = set()  # the orders' executions
        self._slot_freed = asyncio.Event()

    async def loop(self) -> None:
        """The feeder: while this replica leads with an epoch, one Dequeue long poll at
        a time leases as many orders as there are free slots (of
        `execution_concurrency`), and each order runs in a task of its own."""
        while True:
            epoch = await self.leader.leading()
            if self._recovered_epoch != epoch:
                await self._recover(epoch)
                continue
            while len(self._running) >= self.settings.execution_concurrency:
                self._slot_freed.clear()
                await self._slot_freed.wait()
            free = self.settings.execution_concurrency - len(self._running)
            try:
                reply = await self.queue.Dequeue(
                    queue_pb2.DequeueRequest(
                        replica_id=self.leader.replica_id,
                        epoch=epoch,
                        wait_ms=DEQUEUE_WAIT_MS,
                        max_orders=free,
                    ),
                    timeout=DEQUEUE_WAIT_MS / 1000 + 0.5,
                )
            except grpc.aio.AioRpcError as exc:
                if not self.leader.queue_failed(exc, epoch):
                    await asyncio.sleep(0.05)
                continue
            self.leader.queue_answered()
            if reply.has_order:
                self._start(epoch, reply.order, reply.lease_id, reply.lease_ms)
            for leased in reply.more:
                self._start(epoch, leased.order, leased.lease_id, reply.lease_ms)

    def _start(
        self, epoch: int, order: queue_pb2.QueuedOrder, lease_id: str, lease_ms: int
    ) -> None:
        task = self.leader.spawn(self._traced(epoch, order, lease_id, lease_ms))
        self._running.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._slot_freed.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("an execution failed", exc_info=task.exception())

    async def _traced(
        self, epoch: int, order: queue_pb2.QueuedOrder, lease_id: str, lease_ms: int
    ) -> None:
        # The execution joins the checkout's trace through the queue's record.
        with propagation.order_step(
            _TRACER,
            "execute",
            order.order_id.value,
            parent=order.trace_context,
            kind=SpanKind.CONSUMER,
            attributes={
                "bookstore.replica_id": self.leader.replica_id,
                "bookstore.epoch": epoch,
            },
        ):
            await self._execute(epoch, order, lease_id, lease_ms)

    async def _recover(self, epoch: int) -> None:
        """Before any new order of this epoch: finish every decided, unfinished one
        (all at once, as the coordinators of their transactions)."""
        if self.leader.epoch != epoch:
            return
        try:
            reply = await self.queue.ListDecisions(
                queue_pb2.ListDecisionsRequest(limit=1), timeout=self.settings.rpc_timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            if not self.leader.queue_failed(exc, epoch):
                await asyncio.sleep(0.05)
            return
        for record in reply.pending:
            log.info("recovering order=%s decision=%s", record.order_id.value, record.decision)
        finished = await asyncio.gather(
            *(
                self._run_and_complete(
                    epoch, Txn(r.order_id.value, epoch, {}, "", 0, read_log=True), lease_id=""
                )
                for r in reply.pending
            )
        )
        if not all(finished):
            return  # fenced or the queue refused: try again (or step down)
        if len(reply.pending) < MAX_PENDING_LISTED:
            self._recovered_epoch = epoch
            log.info("recovery done epoch=%d finished=%d", epoch, len(reply.pending))

    def _txn_of(self, epoch: int, order: queue_pb2.QueuedOrder) -> Txn | None:
        """The order's transaction (None for an order without payment: no transaction)."""
        if not order.payment_token and not order.amount_cents:
            return None
        items: dict[str, int] = {}
        for item in order.items:
            items[item.book_id] = items.get(item.book_id, 0) + item.quantity
        amount = self.catalogue.amount_cents(order.items)
        if amount != order.amount_cents:
            log.warning(
                "order=%s amount %d differs from the catalogue's %d: charging the catalogue's",
                order.order_id.value,
                order.amount_cents,
                amount,
            )
        first = order.deliveries <= 1
        return Txn(order.order_id.value, epoch, items, order.payment_token, amount, not first)

    async def _execute(
        self, epoch: int, order: queue_pb2.QueuedOrder, lease_id: str, lease_ms: int
    ) -> None:
        order_id = order.order_id.value
        if order_id in self._inflight:
            return  # redelivered while its transaction still runs here; that one completes it
        txn = self._txn_of(epoch, order)
        self._inflight.add(order_id)
        try:
            if txn is None:
                if order_id not in self._done:  # idempotent by order id
                    await self._work(self._lease(epoch, lease_id, order_id), lease_ms / 1000)
                await self._complete(epoch, self._lease(epoch, lease_id, order_id))
            else:
                await self._run_and_complete(epoch, txn, lease_id, lease_ms / 1000)
        finally:
            self._inflight.discard(order_id)

    def _lease(
        self, epoch: int, lease_id: str, order_id: str, **outcome: Any
    ) -> queue_pb2.LeaseRequest:
        return queue_pb2.LeaseRequest(
            replica_id=self.leader.replica_id,
            epoch=epoch,
            lease_id=lease_id,
            order_id=common_pb2.OrderId(value=order_id),
            **outcome,
        )

    async def _run_and_complete(
        self, epoch: int, txn: Txn, lease_id: str, lease_s: float = 0.0
    ) -> bool:
        """The order's 2PC, then Complete with its outcome; False if not completed."""
        lease = self._lease(epoch, lease_id, txn.order_id)
        renewing = self.leader.spawn(self._keep_lease(lease, lease_s)) if lease_id else None
        try:
            # The transaction's own span: its prepares, decision and commits (the gRPC
            # instrumentation's spans) come under it, in the checkout's trace.
            with propagation.order_step(
                _TRACER,
                "two-phase commit",
                txn.order_id,
                attributes={"bookstore.epoch": txn.epoch},
            ):
                outcome = await self.commit.run(txn)
        finally:
            if renewing is not None:
                renewing.cancel()
        if outcome.decision is None:
            if outcome.fenced:
                self.leader.fenced(epoch, "a participant refused my epoch")
            return False
        if outcome.decision is Decision.COMMIT:
            done = self._lease(
                epoch, lease_id, txn.order_id, outcome="executed", amount_cents=txn.amount_cents
            )
        else:
            reason = outcome.customer_reason
            done = self._lease(epoch, lease_id, txn.order_id, outcome="rejected", reason=reason)
        return await self._complete(epoch, done)

    async def _keep_lease(self, lease: queue_pb2.LeaseRequest, lease_s: float) -> None:
        """Renew the lease every third of it while the transaction runs, until the
        queue refuses it: once the decision is logged the order is executed and its
        lease gone (LEASE_LOST) while the commits finish; a refused epoch stops it too.
        An unreachable queue is asked again."""
        every = max(0.05, lease_s / 3)
        while True:
            await asyncio.sleep(every)
            try:
                await self.queue.RenewLease(lease, timeout=every)
            except grpc.RpcError as exc:
                if not isinstance(
                    grpcutil.translate("order-queue", exc), grpcutil.ServiceUnavailable
                ):
                    return

    async def _complete(self, epoch: int, lease: queue_pb2.LeaseRequest) -> bool:
        order_id = lease.order_id.value
        while True:
            try:
                done = await self.leader_calls.complete(lease)
            except grpc.aio.AioRpcError as exc:
                if self.leader.queue_failed(exc, epoch):
                    log.warning("complete order=%s refused: %s", order_id, exc.details())
                    return False
                await asyncio.sleep(0.05)
                continue
            self.leader.queue_answered()
            if not done.duplicate and order_id not in self._done:
                self.executed += 1
            self._done[order_id] = None
            e = done.execution
            log.info(
                "completed order=%s outcome=%s reason=%s sequence=%d epoch=%d duplicate=%s",
                order_id,
                e.outcome or "executed",
                e.reason or "-",
                e.sequence,
                e.epoch,
                done.duplicate,
            )
            return True

    async def _work(self, lease: queue_pb2.LeaseRequest, lease_s: float) -> None:
        """The simulated work, renewing the lease if it outlasts a third of it."""
        work = self.settings.execution_work_s
        if work <= 0:
            return
        renew_every = max(0.05, lease_s / 3)
        end = self.clock() + work
        while (left := end - self.clock()) > 0:
            await asyncio.sleep(min(left, renew_every))
            if end - self.clock() > 0:
                with contextlib.suppress(grpc.RpcError):
                    await self.queue.RenewLease(lease, timeout=0.5)
