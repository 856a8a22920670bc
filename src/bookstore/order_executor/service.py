"""An order executor replica: thin adapters around the Bully `Node`.

- the gRPC servicer: `Deliver` feeds `Node.on_message`; `Status` reports;
- a timer calling `Node.on_tick` every ping_interval/2;
- a sender delivering `Outgoing` messages with short deadlines, fire and
  forget (a failure only means no reply, which the timeouts handle);
- the registration task: a freshly won leader asks the queue for an epoch;
- the work loops (`execution_concurrency` of them), only while leader with an
  epoch: first, once per epoch, recovery: every order with a logged decision
  that is not yet completed is finished (its decision resent to the
  participants) and completed; then Dequeue (long poll) -> the order's
  two-phase commit (`transaction.py`; txn id = order id, epoch = mine) ->
  Complete with the outcome (executed, or rejected with the reason), the lease
  and the epoch. Concurrent orders' Completes and logged decisions share
  LeaderBatch calls (`order_queue.client.LeaderCalls`), each fenced on its own.
  STALE_EPOCH or LEADER_ALIVE -> `on_fenced`; the queue unreachable for
  queue_unreachable_s -> `on_queue_unreachable`.

An order enqueued without a payment token and amount (the queue's own tests
and benchmarks, which run without the books database and payment) is
completed as executed without a transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import time
from collections import deque
from typing import Any, TypeAlias, cast

import grpc
from opentelemetry.trace import SpanKind

from bookstore import grpcutil
from bookstore.backoff import Backoff
from bookstore.bounded import BoundedMapping
from bookstore.catalogue import Catalogue, load_catalogue
from bookstore.commitment.participant import Decision
from bookstore.commitment.trace import CommitmentTrace
from bookstore.identity.policy import require_replica
from bookstore.order_executor.bully import (
    FOLLOWER,
    Kind,
    Message,
    Node,
    Outgoing,
    Step,
    Timings,
)
from bookstore.order_executor.transaction import CrashHook, TwoPhaseCommit, Txn
from bookstore.order_queue.client import LeaderCalls
from bookstore.order_queue.state import LeaderAlive, StaleEpoch
from bookstore.pb import common_pb2, executor_pb2, executor_pb2_grpc, queue_pb2, queue_pb2_grpc
from bookstore.settings import Settings
from bookstore.telemetry import metrics, propagation
from bookstore.timestamps import utc_iso

log = logging.getLogger(__name__)
_TRACER = propagation.tracer(__name__)

SERVICE_NAME = "bookstore.executor.OrderExecutor"
Context: TypeAlias = Any  # grpc.aio.ServicerContext (grpc ships no type hints)
DEQUEUE_WAIT_MS = 250
RECENT_STEPS = 50
REMEMBERED_ORDERS = 10_000
MAX_PENDING_LISTED = 100  # the queue's cap on ListDecisions' pending list
REGISTER_BACKOFF_FIRST_S = 0.05
REGISTER_BACKOFF_CAP_S = 1.0  # not past queue_unreachable_s by much: a cut-off leader steps down
QUEUE = "order-queue"
# The queue's refusals that depose a leader: its epoch is over, or another leader
# holds the queue. A lost lease (LEASE_LOST) only ends the work on that order.
FENCED = frozenset({StaleEpoch.code, LeaderAlive.code})


class QueueAnswer(enum.Enum):
    """What a failed queue call means to the executor (result codes, not gRPC status)."""

    UNREACHABLE = "UNREACHABLE"  # the queue is down, slow or overloaded: try again
    FENCED = "FENCED"  # the queue refused my leadership
    REFUSED = "REFUSED"  # the queue refused this request only


def classify(exc: grpc.RpcError) -> tuple[QueueAnswer, str]:
    """The meaning of a failed queue call, and its reason (via grpcutil's translation)."""
    error = grpcutil.translate(QUEUE, exc)
    if isinstance(error, grpcutil.ServiceUnavailable):
        return QueueAnswer.UNREACHABLE, error.detail
    if error.code in FENCED:
        return QueueAnswer.FENCED, str(error)
    return QueueAnswer.REFUSED, str(error)


_KINDS = {
    Kind.ELECTION: executor_pb2.BullyMessage.ELECTION,
    Kind.ANSWER: executor_pb2.BullyMessage.ANSWER,
    Kind.COORDINATOR: executor_pb2.BullyMessage.COORDINATOR,
    Kind.PING: executor_pb2.BullyMessage.PING,
    Kind.PONG: executor_pb2.BullyMessage.PONG,
}
_FROM_PB = {v: k for k, v in _KINDS.items()}


def timings_from(settings: Settings) -> Timings:
    return Timings(
        ping_interval=settings.ping_interval_s,
        failure_timeout=settings.failure_timeout_s,
        election_timeout=settings.election_timeout_s,
        coordinator_timeout=settings.coordinator_timeout_s,
        queue_unreachable=settings.queue_unreachable_s,
    )


class Executor:
    """One replica: the node, its timer, its sender and its work loop."""

    def __init__(
        self,
        settings: Settings,
        replica_id: int,
        clock: Any = time.monotonic,
        catalogue: Catalogue | None = None,
    ) -> None:
        self.settings = settings
        self.replica_id = replica_id
        self.clock = clock
        self.timings = timings_from(settings)
        peers = [i for i in settings.order_executor_addresses if i != replica_id]
        self.steps: deque[executor_pb2.ElectionStep] = deque(maxlen=RECENT_STEPS)
        self.node = Node(replica_id, peers, self.timings, listener=self._on_step)
        self.executed = 0
        # each coordinated order's two-phase-commit messages, for the cluster view
        self.commitments = CommitmentTrace()
        # orders this replica executed
        self._done: BoundedMapping[str, None] = BoundedMapping(REMEMBERED_ORDERS)
        self._peer_channels: dict[int, grpc.aio.Channel] = {}
        self._peer_stubs: dict[int, executor_pb2_grpc.OrderExecutorAsyncStub] = {}
        self._queue_channel = grpcutil.channel(settings.order_queue_address)
        self.queue = cast(
            "queue_pb2_grpc.OrderQueueAsyncStub", queue_pb2_grpc.OrderQueueStub(self._queue_channel)
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._registering: asyncio.Task[None] | None = None
        # Paces every registration of this replica (retries and re-elections);
        # reset once it holds a fresh epoch, or follows a leader that announced one
        # (the contest that fenced it is settled: its next win is a new failover).
        self._register_backoff = Backoff(
            REGISTER_BACKOFF_FIRST_S, REGISTER_BACKOFF_CAP_S, jitter=0.9, immediate_first=True
        )
        self._probing: asyncio.Task[None] | None = None
        self._leading = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._queue_ok_at = 0.0
        self.catalogue = catalogue if catalogue is not None else load_catalogue()
        # Decisions and completions of concurrent orders share LeaderBatch calls.
        self.leader_calls = LeaderCalls(lambda: self.queue, settings.rpc_timeout_s)
        crash = CrashHook(settings.test_crash_at, settings.data_dir)
        self.commit = TwoPhaseCommit(
            settings, self.queue, crash, self.commitments, leader_calls=self.leader_calls
        )
        self._inflight: set[str] = set()  # orders whose transaction runs here now
        self._recovered_epoch = 0  # the epoch whose in-doubt orders are finished
        self._recovering = asyncio.Lock()

    # -- the node's events -----------------------------------------------------

    def _on_step(self, step: Step) -> None:
        pb = executor_pb2.ElectionStep(
            at=utc_iso(),
            replica_id=step.replica_id,
            step=step.step,
            detail=step.detail,
            epoch=step.epoch,
        )
        self.steps.append(pb)
        if step.step == "called":
            metrics.ELECTIONS.inc()
        log.info(
            "election replica=%d step=%s epoch=%d role=%s leader=%s detail=%s",
            step.replica_id,
            step.step,
            step.epoch,
            self.node.role if hasattr(self, "node") else "-",
            (self.node.leader if hasattr(self, "node") else None) or "-",
            step.detail,
        )

    def _after(self, out: list[Outgoing]) -> None:
        """Send what the node produced; start registering or working as needed."""
        for o in out:
            self._send(o)
        if self._follows_a_leader():
            self._register_backoff.reset()
        if self.node.needs_registration and (self._registering is None or self._registering.done()):
            self._registering = self._spawn(self._register())
        if self.node.abstaining and (self._probing is None or self._probing.done()):
            self._probing = self._spawn(self._probe_queue())
        if self.node.is_working_leader:
            self._leading.set()
        else:
            self._leading.clear()

    def _follows_a_leader(self) -> bool:
        """Following a higher replica's COORDINATOR (not while cut off from the queue)."""
        node = self.node
        return node.role == FOLLOWER and node.leader is not None and not node.abstaining

    def handle(self, msg: Message) -> None:
        self._after(self.node.on_message(msg, self.clock()))

    def tick(self) -> None:
        self._after(self.node.on_tick(self.clock()))

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- sending ------------------------------------------------------------------

    def _stub(self, peer: int) -> executor_pb2_grpc.OrderExecutorAsyncStub:
        stub = self._peer_stubs.get(peer)
        if stub is None:
            channel = grpcutil.channel(self.settings.order_executor_addresses[peer])
            self._peer_channels[peer] = channel
            stub = cast(
                "executor_pb2_grpc.OrderExecutorAsyncStub",
                executor_pb2_grpc.OrderExecutorStub(channel),
            )
            self._peer_stubs[peer] = stub
        return stub

    def _send(self, out: Outgoing) -> None:
        m = out.message
        pb = executor_pb2.BullyMessage(
            kind=_KINDS[m.kind], sender=m.sender, leader=m.leader, epoch=m.epoch, nonce=m.nonce
        )
        self._spawn(self._deliver(out.to, pb))

    async def _deliver(self, peer: int, pb: executor_pb2.BullyMessage) -> None:
        # Fire and forget: a lost message is what the timeouts are for.
        timeout = max(0.1, min(0.5, self.timings.failure_timeout))
        with contextlib.suppress(grpc.RpcError, asyncio.CancelledError):
            await self._stub(peer).Deliver(pb, timeout=timeout)

    # -- the queue: registration ----------------------------------------------------

    async def _register(self) -> None:
        started = self.clock()
        while self.node.needs_registration:
            await asyncio.sleep(self._register_backoff.next())
            if not self.node.needs_registration:
                return
            try:
                reply = await self.queue.RegisterLeader(
                    queue_pb2.RegisterLeaderRequest(replica_id=self.replica_id), timeout=0.5
                )
            except grpc.aio.AioRpcError as exc:
                answer, reason = classify(exc)
                if answer is QueueAnswer.UNREACHABLE:
                    if self.clock() - started >= self.timings.queue_unreachable:
                        self._after(self.node.on_queue_unreachable(self.clock()))
                        return
                    continue
                self._after(self.node.on_fenced(self.clock(), reason))
                return
            self._queue_ok_at = self.clock()
            started = self.clock()
            # Normally done now; a stale grant leaves the node asking again.
            self._after(self.node.on_registered(reply.epoch, self.clock()))
            if self.node.is_working_leader:
                self._register_backoff.reset()

    async def _probe_queue(self) -> None:
        """While abstaining, ask the queue how it is until it answers."""
        while self.node.abstaining:
            await asyncio.sleep(0.2)
            try:
                await self.queue.Status(common_pb2.Empty(), timeout=0.3)
            except grpc.aio.AioRpcError:
                continue
            self._queue_ok_at = self.clock()
            self._after(self.node.on_queue_reachable(self.clock()))
            return

    # -- the queue: the work loop -------------------------------------------------

    def _queue_failed(self, exc: grpc.aio.AioRpcError, epoch: int) -> bool:
        """Report a queue error to the node; True when the caller should stop."""
        answer, reason = classify(exc)
        if answer is QueueAnswer.UNREACHABLE:
            if self.clock() - self._queue_ok_at >= self.timings.queue_unreachable:
                self._after(self.node.on_queue_unreachable(self.clock()))
                return True
            return False
        self._queue_ok_at = self.clock()
        # Only a refusal of the epoch I still hold deposes me (not a late reply
        # to a request of an earlier reign).
        fenced = answer is QueueAnswer.FENCED
        if fenced and self.node.is_working_leader and self.node.epoch == epoch:
            self._after(self.node.on_fenced(self.clock(), reason))
        return True

    async def work_loop(self) -> None:
        while True:
            await self._leading.wait()
            if not self.node.is_working_leader:
                self._leading.clear()
                continue
            epoch = self.node.epoch
            if self._recovered_epoch != epoch:
                await self._recover(epoch)
                continue
            try:
                reply = await self.queue.Dequeue(
                    queue_pb2.DequeueRequest(
                        replica_id=self.replica_id, epoch=epoch, wait_ms=DEQUEUE_WAIT_MS
                    ),
                    timeout=DEQUEUE_WAIT_MS / 1000 + 0.5,
                )
            except grpc.aio.AioRpcError as exc:
                if not self._queue_failed(exc, epoch):
                    await asyncio.sleep(0.05)
                continue
            self._queue_ok_at = self.clock()
            if reply.has_order:
                # The execution joins the checkout's trace through the queue's record.
                with propagation.order_step(
                    _TRACER,
                    "execute",
                    reply.order.order_id.value,
                    parent=reply.order.trace_context,
                    kind=SpanKind.CONSUMER,
                    attributes={"bookstore.replica_id": self.replica_id, "bookstore.epoch": epoch},
                ):
                    await self._execute(epoch, reply)

    async def _recover(self, epoch: int) -> None:
        """Before any new order of this epoch: finish every decided, uncompleted one."""
        async with self._recovering:
            if self._recovered_epoch == epoch or self.node.epoch != epoch:
                return
            try:
                reply = await self.queue.ListDecisions(
                    queue_pb2.ListDecisionsRequest(limit=1), timeout=self.settings.rpc_timeout_s
                )
            except grpc.aio.AioRpcError as exc:
                if not self._queue_failed(exc, epoch):
                    await asyncio.sleep(0.05)
                return
            for record in reply.pending:
                order_id = record.order_id.value
                log.info("recovering order=%s decision=%s", order_id, record.decision)
                txn = Txn(order_id, epoch, {}, "", 0, read_log=True)
                if not await self._run_and_complete(epoch, txn, lease_id=""):
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

    async def _execute(self, epoch: int, reply: queue_pb2.DequeueReply) -> None:
        order_id = reply.order.order_id.value
        if order_id in self._inflight:
            return  # redelivered while its transaction still runs here; that one completes it
        txn = self._txn_of(epoch, reply.order)
        self._inflight.add(order_id)
        try:
            if txn is None:
                if order_id not in self._done:  # idempotent by order id
                    await self._work(
                        self._lease(epoch, reply.lease_id, order_id), reply.lease_ms / 1000
                    )
                await self._complete(epoch, self._lease(epoch, reply.lease_id, order_id))
            else:
                await self._run_and_complete(epoch, txn, reply.lease_id, reply.lease_ms / 1000)
        finally:
            self._inflight.discard(order_id)

    def _lease(
        self, epoch: int, lease_id: str, order_id: str, **outcome: Any
    ) -> queue_pb2.LeaseRequest:
        return queue_pb2.LeaseRequest(
            replica_id=self.replica_id,
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
        renewing = self._spawn(self._keep_lease(lease, lease_s)) if lease_id else None
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
            if outcome.fenced and self.node.is_working_leader and self.node.epoch == epoch:
                self._after(self.node.on_fenced(self.clock(), "a participant refused my epoch"))
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
        """Renew the lease every third of it while the transaction runs."""
        every = max(0.05, lease_s / 3)
        while True:
            await asyncio.sleep(every)
            with contextlib.suppress(grpc.RpcError):
                await self.queue.RenewLease(lease, timeout=every)

    async def _complete(self, epoch: int, lease: queue_pb2.LeaseRequest) -> bool:
        order_id = lease.order_id.value
        while True:
            try:
                done = await self.leader_calls.complete(lease)
            except grpc.aio.AioRpcError as exc:
                if self._queue_failed(exc, epoch):
                    log.warning("complete order=%s refused: %s", order_id, exc.details())
                    return False
                await asyncio.sleep(0.05)
                continue
            self._queue_ok_at = self.clock()
            self._done[order_id] = None
            if not done.duplicate:
                self.executed += 1
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

    # -- lifecycle ----------------------------------------------------------------

    async def tick_loop(self) -> None:
        interval = max(0.01, self.timings.ping_interval / 2)
        while True:
            self.tick()
            await asyncio.sleep(interval)

    def start(self) -> None:
        self._after(self.node.start(self.clock()))
        self._loops = [
            asyncio.create_task(self.tick_loop(), name="bully-tick"),
        ]
        self._loops += [
            asyncio.create_task(self.work_loop(), name=f"work-loop-{i}")
            for i in range(self.settings.execution_concurrency)
        ]

    async def close(self) -> None:
        for task in [*self._loops, *self._tasks]:
            task.cancel()
        for task in [*self._loops, *self._tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.leader_calls.close()
        await self.commit.close()
        for channel in [*self._peer_channels.values(), self._queue_channel]:
            await channel.close()

    def status(self) -> executor_pb2.ExecutorStatus:
        return executor_pb2.ExecutorStatus(
            replica_id=self.replica_id,
            role=self.node.role,
            leader_id=self.node.leader or 0,
            epoch=self.node.epoch,
            pid=os.getpid(),
            executed=self.executed,
            recent_steps=list(self.steps),
        )


class OrderExecutorServicer(executor_pb2_grpc.OrderExecutorServicer):
    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    async def Deliver(
        self, request: executor_pb2.BullyMessage, context: Context
    ) -> common_pb2.Empty:
        # The policy admits only executors; a message must also come from the
        # replica it names, so no replica can speak (and lead) for another.
        await require_replica(context, "order-executor", request.sender)
        kind = _FROM_PB.get(request.kind)
        if kind is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "BAD_REQUEST: unknown kind")
        else:
            self.executor.handle(
                Message(kind, request.sender, request.leader, request.epoch, request.nonce)
            )
        return common_pb2.Empty()

    async def Status(
        self, request: common_pb2.Empty, context: Context
    ) -> executor_pb2.ExecutorStatus:
        return self.executor.status()

    async def Commitment(
        self, request: common_pb2.OrderId, context: Context
    ) -> executor_pb2.CommitmentLog:
        steps = self.executor.commitments.steps(request.value)
        return executor_pb2.CommitmentLog(
            replica_id=self.executor.replica_id,
            steps=[
                executor_pb2.CommitmentStep(
                    at=s.at,
                    kind=s.kind,
                    sender=s.sender,
                    receiver=s.receiver,
                    detail=s.detail,
                    epoch=s.epoch,
                )
                for s in steps
            ],
        )


def create_server(bind: str, executor: Executor) -> tuple[grpc.aio.Server, Any, int]:
    servicer = OrderExecutorServicer(executor)
    return grpcutil.create_server(
        bind,
        lambda server: executor_pb2_grpc.add_OrderExecutorServicer_to_server(servicer, server),
        [SERVICE_NAME],
    )


async def serve(settings: Settings, replica_id: int | None = None) -> None:
    if replica_id is None:
        raise ValueError("order-executor needs a replica id")
    bind = settings.bind_address("order-executor", replica_id)
    executor = Executor(settings, replica_id)
    server, health, port = create_server(bind, executor)
    label = f"order-executor {replica_id} on {bind} (port {port})"
    try:
        await grpcutil.serve(
            server, health, [SERVICE_NAME], label=label, grace_s=0.5, start=executor.start
        )
    finally:
        await executor.close()
