"""The order-queue gRPC service: a thin servicer over `QueueStore`.

Each call reads in order: the request becomes the store's (an order, a
completion, a decision), the store checks it with the queue's rules, writes
it and answers once it is on disk. The batch calls (EnqueueBatch,
LeaderBatch) carry the enqueues, decisions and completions: they hand the
store all their operations at once (one transaction) and answer each with its
reply, or its refusal as an `OpError` carrying its status code and details.

Each order carries its checkout's trace context into the queue and out with
the dequeued order, so the executor continues the checkout's trace. An order
enqueued before a restart of the queue is executed all the same, outside its
checkout's trace.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeAlias, TypeVar

import grpc

from bookstore import grpcutil
from bookstore.identity.policy import replica_refusal, require_replica
from bookstore.order_queue.db import DiskFull, Execution, StorageFailure
from bookstore.order_queue.decisions import LoggedDecision
from bookstore.order_queue.state import (
    BadRequest,
    Completion,
    Decide,
    Item,
    LeaderOp,
    Limits,
    Order,
    QueueError,
    UnknownOrder,
    UnknownReplica,
)
from bookstore.order_queue.store import QueueStore
from bookstore.pb import common_pb2, queue_pb2, queue_pb2_grpc
from bookstore.settings import Settings
from bookstore.telemetry import metrics

log = logging.getLogger(__name__)

SERVICE_NAME = "bookstore.queue.OrderQueue"
MAX_WAIT_MS = 10_000
MAX_DEQUEUE_ORDERS = 256  # orders one Dequeue leases at most
MAX_BATCH_OPS = 1024  # operations in one batch call (the clients send at most 64)
CURRENCY = "EUR"  # amounts are integer cents in EUR (as payment's ledger)


class NotAllowed(QueueError):
    """A batched operation names a replica other than the caller's certificate."""

    code = "NOT_ALLOWED"


_CODES: dict[type[QueueError], grpc.StatusCode] = {
    BadRequest: grpc.StatusCode.INVALID_ARGUMENT,
    UnknownOrder: grpc.StatusCode.NOT_FOUND,
    UnknownReplica: grpc.StatusCode.PERMISSION_DENIED,
    NotAllowed: grpc.StatusCode.PERMISSION_DENIED,
}


def _status(exc: BaseException) -> tuple[grpc.StatusCode, str] | None:
    """The status a refused call ends with (None: not a refusal, a bug)."""
    if isinstance(exc, QueueError):
        return _CODES.get(type(exc), grpc.StatusCode.FAILED_PRECONDITION), str(exc)
    if isinstance(exc, DiskFull):
        return grpc.StatusCode.UNAVAILABLE, f"DISK_FULL: {exc}"
    if isinstance(exc, StorageFailure):
        return grpc.StatusCode.UNAVAILABLE, "STORAGE_FAILED: the queue is stopping"
    return None


async def _abort(context: Any, exc: Exception) -> None:
    status = _status(exc)
    if status is not None:
        await context.abort(*status)
    raise exc


def op_error(exc: BaseException) -> queue_pb2.OpError:
    """A batched operation's refusal: its status code and details."""
    status = _status(exc)
    if status is None:
        raise exc
    code, details = status
    return queue_pb2.OpError(code=code.value[0], details=details)


def execution_pb(record: Execution) -> queue_pb2.ExecutionRecord:
    return queue_pb2.ExecutionRecord(
        order_id=common_pb2.OrderId(value=record.order_id),
        executor=record.executor,
        epoch=record.epoch,
        sequence=record.sequence,
        executed_at=record.executed_at,
        outcome=record.outcome,
        reason=record.reason,
        amount_cents=record.amount_cents,
        currency=CURRENCY,
    )


def decision_pb(logged: LoggedDecision) -> queue_pb2.DecisionRecord:
    return queue_pb2.DecisionRecord(
        order_id=common_pb2.OrderId(value=logged.order_id),
        decision=logged.decision,
        epoch=logged.epoch,
        reason=logged.reason,
        decided_at=logged.decided_at,
    )


def order_pb(order: Order) -> queue_pb2.QueuedOrder:
    return queue_pb2.QueuedOrder(
        order_id=common_pb2.OrderId(value=order.order_id),
        items=[
            common_pb2.OrderItem(book_id=i.book_id, title=i.title, quantity=i.quantity)
            for i in order.items
        ],
        customer_name=order.customer_name,
        books=order.books,
        sequence=order.sequence,
        deliveries=order.deliveries,
        payment_token=order.payment_token,
        amount_cents=order.amount_cents,
        trace_context=order.trace_context,
    )


def _enqueued(result: tuple[int, bool]) -> queue_pb2.EnqueueReply:
    sequence, duplicate = result
    return queue_pb2.EnqueueReply(sequence=sequence, duplicate=duplicate)


def _completed(result: tuple[Execution, bool]) -> queue_pb2.CompleteReply:
    record, duplicate = result
    return queue_pb2.CompleteReply(execution=execution_pb(record), duplicate=duplicate)


def _completion(c: queue_pb2.LeaseRequest) -> Completion:
    return Completion(
        c.replica_id,
        c.epoch,
        c.lease_id,
        c.order_id.value,
        c.outcome or "executed",
        c.reason,
        c.amount_cents,
    )


Context: TypeAlias = Any  # grpc.aio.ServicerContext (grpc ships no type hints)
Req = TypeVar("Req")
Checked = TypeVar("Checked")


async def _each(
    context: Context,
    requests: Sequence[Req],
    check: Callable[[Req], Checked],
    write: Callable[[list[Checked]], Awaitable[Sequence[Any]]],
) -> list[Any]:
    """A batch call's outcome per request, in order: its refusal by `check` (a
    QueueError), or its result from `write` (all accepted ones in one transaction).
    A full disk refuses each of them; only a queue that stops fails the call."""
    outcomes: list[Any] = []
    checked: dict[int, Checked] = {}  # index of the request -> what the store writes
    for index, request in enumerate(requests):
        try:
            checked[index] = check(request)
            outcomes.append(None)
        except QueueError as exc:
            outcomes.append(exc)
    try:
        results = await write(list(checked.values()))
    except (StorageFailure, DiskFull) as exc:  # the whole transaction
        if isinstance(exc, StorageFailure):
            await _abort(context, exc)
        results = [exc] * len(checked)
    for index, result in zip(checked, results, strict=True):
        outcomes[index] = result
    return outcomes


EXECUTOR = "order-executor"


class OrderQueueServicer(queue_pb2_grpc.OrderQueueServicer):
    """The policy lets only executors register, dequeue, renew and complete;
    each of those calls must also name the caller's own replica id."""

    def __init__(self, store: QueueStore) -> None:
        self.store = store

    def _order(self, request: queue_pb2.EnqueueRequest) -> Order:
        """The request's order, checked by the queue's rules (BAD_REQUEST)."""
        o = request.order
        items = [Item(i.book_id, i.title, i.quantity) for i in o.items]
        return self.store.order(
            o.order_id.value,
            items,
            o.customer_name,
            o.payment_token,
            o.amount_cents,
            o.trace_context,
        )

    async def EnqueueBatch(
        self, request: queue_pb2.EnqueueBatchRequest, context: Context
    ) -> queue_pb2.EnqueueBatchReply:
        await self._check_size(context, request.enqueues)
        outcomes = await _each(context, request.enqueues, self._order, self.store.enqueue_all)
        reply = queue_pb2.EnqueueBatchReply()
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                reply.outcomes.add(error=op_error(outcome))
            else:
                reply.outcomes.add(reply=_enqueued(outcome))
        return reply

    @staticmethod
    async def _check_size(context: Context, ops: Sequence[Any]) -> None:
        """A batch call fails as a whole only when it is too large or the queue stops."""
        if len(ops) > MAX_BATCH_OPS:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"BAD_REQUEST: at most {MAX_BATCH_OPS} operations per batch",
            )

    async def RegisterLeader(
        self, request: queue_pb2.RegisterLeaderRequest, context: Context
    ) -> queue_pb2.RegisterLeaderReply:
        await require_replica(context, EXECUTOR, request.replica_id)
        try:
            epoch = await self.store.register_leader(request.replica_id)
        except (QueueError, StorageFailure, DiskFull) as exc:
            await _abort(context, exc)
            raise
        return queue_pb2.RegisterLeaderReply(epoch=epoch)

    async def Dequeue(
        self, request: queue_pb2.DequeueRequest, context: Context
    ) -> queue_pb2.DequeueReply:
        await require_replica(context, EXECUTOR, request.replica_id)
        wait_s = min(request.wait_ms, MAX_WAIT_MS) / 1000
        most = min(max(1, request.max_orders), MAX_DEQUEUE_ORDERS)
        try:
            taken = await self.store.dequeue_many(request.replica_id, request.epoch, wait_s, most)
        except QueueError as exc:
            await _abort(context, exc)
            raise
        if not taken:
            return queue_pb2.DequeueReply(has_order=False)
        (order, lease), *more = taken
        return queue_pb2.DequeueReply(
            has_order=True,
            order=order_pb(order),
            lease_id=lease.lease_id,
            lease_ms=int(self.store.state.lease_s * 1000),
            more=[queue_pb2.LeasedOrder(order=order_pb(o), lease_id=x.lease_id) for o, x in more],
        )

    async def RenewLease(
        self, request: queue_pb2.LeaseRequest, context: Context
    ) -> queue_pb2.RenewLeaseReply:
        await require_replica(context, EXECUTOR, request.replica_id)
        try:
            lease_s = await self.store.renew(
                request.replica_id, request.epoch, request.lease_id, request.order_id.value
            )
        except QueueError as exc:
            await _abort(context, exc)
            raise
        return queue_pb2.RenewLeaseReply(lease_ms=int(lease_s * 1000))

    async def WatchExecutions(
        self, request: queue_pb2.WatchRequest, context: Context
    ) -> AsyncIterator[queue_pb2.ExecutionRecord]:
        async with self.store.subscribe() as feed:
            # Initial metadata tells the client the subscription is in place.
            await context.send_initial_metadata(())
            while True:
                record = await feed.get()
                if record is None:
                    return
                yield execution_pb(record)

    async def GetOrder(
        self, request: common_pb2.OrderId, context: Context
    ) -> queue_pb2.OrderStatus:
        try:
            view = await self.store.get_order(request.value)
        except QueueError as exc:
            await _abort(context, exc)
            raise
        reply = queue_pb2.OrderStatus(state=view.state, books=view.books, sequence=view.sequence)
        if view.execution is not None:
            reply.execution.CopyFrom(execution_pb(view.execution))
        return reply

    async def Status(self, request: common_pb2.Empty, context: Context) -> queue_pb2.QueueStatus:
        s = self.store.status()
        return queue_pb2.QueueStatus(
            depth=s.depth,
            next=[order_pb(o) for o in s.next],
            epoch=s.epoch,
            leader_id=s.leader_id,
            leased=s.leased,
            executed=s.executed,
            pid=s.pid,
        )

    async def GetDecision(
        self, request: common_pb2.OrderId, context: Context
    ) -> queue_pb2.DecisionRecord:
        logged = await self.store.get_decision(request.value)
        if logged is None:
            return queue_pb2.DecisionRecord(order_id=request)
        return decision_pb(logged)

    async def ListDecisions(
        self, request: queue_pb2.ListDecisionsRequest, context: Context
    ) -> queue_pb2.DecisionList:
        pending, recent = await self.store.list_decisions(request.limit or 20)
        return queue_pb2.DecisionList(
            pending=[decision_pb(d) for d in pending], recent=[decision_pb(d) for d in recent]
        )

    async def LeaderBatch(
        self, request: queue_pb2.LeaderBatchRequest, context: Context
    ) -> queue_pb2.LeaderBatchReply:
        await self._check_size(context, request.ops)
        check = functools.partial(self._leader_op, context=context)
        outcomes = await _each(context, request.ops, check, self.store.leader_ops)
        reply = queue_pb2.LeaderBatchReply()
        for op, outcome in zip(request.ops, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                reply.outcomes.add(error=op_error(outcome))
            elif op.HasField("complete"):
                reply.outcomes.add(complete=_completed(outcome))
            else:
                reply.outcomes.add(decision=decision_pb(outcome))
        return reply

    @staticmethod
    def _leader_op(op: queue_pb2.LeaderOp, *, context: Context) -> LeaderOp:
        """A log_decision or a complete, checked (a complete must name the caller's
        own replica id)."""
        if op.HasField("log_decision"):
            d = op.log_decision
            return Decide(
                d.order_id.value,
                d.decision,
                d.epoch,
                d.reason,
                d.amount_cents,
                d.customer_reason,
            )
        if op.HasField("complete"):
            refusal = replica_refusal(context, EXECUTOR, op.complete.replica_id)
            if refusal is not None:
                raise NotAllowed(refusal)
            return _completion(op.complete)
        raise BadRequest("an operation is a log_decision or a complete")


def create_server(bind: str, store: QueueStore) -> tuple[grpc.aio.Server, Any, int]:
    """The queue's server bound to `bind` (port 0: a free one); not yet started.

    The queue's gauges read this server's store and servicer when scraped.
    """
    servicer = OrderQueueServicer(store)
    metrics.QUEUE_DEPTH.set_function(lambda: store.state.depth)
    metrics.QUEUE_OLDEST_AGE.set_function(store.oldest_wait_s)
    metrics.LEADER_EPOCH.set_function(lambda: store.state.epoch)
    metrics.LEADER_REPLICA.set_function(lambda: store.state.leader_id or 0)
    return grpcutil.create_server(
        bind,
        lambda server: queue_pb2_grpc.add_OrderQueueServicer_to_server(servicer, server),
        [SERVICE_NAME],
    )


def open_store(settings: Settings) -> QueueStore:
    return QueueStore(
        settings.data_dir / "order-queue" / "queue.db",
        lease_s=settings.lease_s,
        group_commit_max=settings.group_commit_max,
        failure_timeout_s=settings.failure_timeout_s,
        limits=Limits(settings.max_items, settings.max_quantity),
        replica_ids=settings.order_executor_addresses,
        retention_s=settings.queue_retention_s,
        sweep_interval_s=settings.queue_sweep_interval_s,
    )


async def serve(settings: Settings, replica_id: int | None = None) -> None:
    store = open_store(settings)
    await store.open()
    bind = settings.bind_address("order-queue")
    server, health, port = create_server(bind, store)
    label = f"order-queue on {bind} (port {port})"
    try:
        await grpcutil.serve(server, health, [SERVICE_NAME], label=label, grace_s=1.0)
    finally:
        with contextlib.suppress(Exception):
            await store.close()
