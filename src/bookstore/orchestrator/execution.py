"""The orchestrator's link to the order queue and the executors.

One channel to the queue. `enqueue` returns once the queue has the order on
disk (idempotent by order id, so one retry on an unreachable queue is safe);
concurrent checkouts' enqueues share EnqueueBatch calls (`order_queue.client`).
A `WatchExecutions` stream stays open (reconnecting with back-off); every
record it brings resolves the futures of `wait_executed` callers, so nobody
polls. After each (re)connect the orders still waited on are re-checked with
`GetOrder`, since executions may have happened while the stream was down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import cast

import grpc

from bookstore import grpcutil
from bookstore.backoff import Backoff, cancelled, reconnect
from bookstore.bounded import BoundedMapping
from bookstore.order_queue.client import Enqueues
from bookstore.pb import common_pb2, queue_pb2, queue_pb2_grpc
from bookstore.settings import Settings
from bookstore.telemetry import propagation, tracing

log = logging.getLogger(__name__)

QUEUE = "order-queue"
STABLE_STREAM_S = 1.0  # a feed that stayed up this long was a working one
RECENT_EXECUTIONS = 10_000
ENQUEUE_BACKOFF_MIN_S = 0.05
ENQUEUE_BACKOFF_MAX_S = 0.5
TEXT_LIMIT = 256  # the queue's limit on names and titles (order_queue.state.MAX_TEXT_CHARS)


@dataclass(frozen=True)
class QueuedItem:
    book_id: str
    title: str
    quantity: int


# The states of an order the executors are done with: its transaction
# committed (copies taken, payment captured) or aborted (nothing taken).
FINISHED = ("executed", "rejected")


@dataclass(frozen=True)
class ExecutionInfo:
    state: str  # "queued" | "leased" | "executed" | "rejected"
    executor: int | None = None
    epoch: int | None = None
    sequence: int | None = None
    executed_at: str | None = None  # RFC 3339
    reason: str = ""  # rejected: "out of stock: <titles>", "payment declined: <why>"
    amount_cents: int = 0  # executed: the amount captured
    currency: str = ""

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


def _info(record: queue_pb2.ExecutionRecord) -> ExecutionInfo:
    return ExecutionInfo(
        state="rejected" if record.outcome == "rejected" else "executed",
        executor=record.executor,
        epoch=record.epoch,
        sequence=record.sequence,
        executed_at=record.executed_at,
        reason=record.reason,
        amount_cents=record.amount_cents,
        currency=record.currency,
    )


def _enqueue_request(
    order_id: str,
    items: list[QueuedItem],
    customer_name: str,
    *,
    payment_token: str,
    amount_cents: int,
) -> queue_pb2.EnqueueRequest:
    return queue_pb2.EnqueueRequest(
        order=queue_pb2.QueuedOrder(
            order_id=common_pb2.OrderId(value=order_id),
            items=[
                common_pb2.OrderItem(
                    book_id=i.book_id[:TEXT_LIMIT], title=i.title[:TEXT_LIMIT], quantity=i.quantity
                )
                for i in items
            ],
            # An approved order must not fail on a long name: the queue keeps
            # at most TEXT_LIMIT characters of each text.
            customer_name=customer_name[:TEXT_LIMIT],
            payment_token=payment_token,
            amount_cents=amount_cents,
            # The execution joins the checkout's trace (empty with tracing off).
            trace_context=propagation.inject() if tracing.enabled() else "",
        )
    )


class ExecutionTracker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._channel: grpc.aio.Channel | None = None
        self._queue: queue_pb2_grpc.OrderQueueAsyncStub | None = None
        self._enqueues = Enqueues(lambda: self.queue, settings.rpc_timeout_s)
        self._waiters: dict[str, list[asyncio.Future[ExecutionInfo]]] = {}
        self._recent: BoundedMapping[str, ExecutionInfo] = BoundedMapping(RECENT_EXECUTIONS)
        self._watch: asyncio.Task[None] | None = None
        self._checks: set[asyncio.Task[None]] = set()
        # Orders this tracker enqueued -> the feed connection they were enqueued
        # under: the feed is sure to bring their execution while it stays up.
        self._enqueued: BoundedMapping[str, int] = BoundedMapping(RECENT_EXECUTIONS)
        # Order -> the distinct executions (executor, epoch, sequence) reported for it:
        # more than one would be an order executed twice (the chaos audit counts them).
        self._executions: BoundedMapping[str, set[tuple[int | None, int | None, int | None]]] = (
            BoundedMapping(RECENT_EXECUTIONS)
        )
        self._generation = 0
        self._outage_reported = False
        self.watching = False

    async def start(self) -> None:
        self._channel = grpcutil.channel(self.settings.order_queue_address)
        self._queue = cast(
            "queue_pb2_grpc.OrderQueueAsyncStub", queue_pb2_grpc.OrderQueueStub(self._channel)
        )
        self._watch = asyncio.create_task(self._watch_loop(), name="watch-executions")

    async def close(self) -> None:
        await cancelled(self._watch)
        self._watch = None
        for task in list(self._checks):
            task.cancel()
        for futures in self._waiters.values():
            for f in futures:
                f.cancel()
        self._waiters.clear()
        await self._enqueues.close()
        if self._channel is not None:
            await self._channel.close()
        self._channel = None

    @property
    def queue(self) -> queue_pb2_grpc.OrderQueueAsyncStub:
        if self._queue is None:
            raise grpcutil.ServiceUnavailable(QUEUE, "not started")
        return self._queue

    # -- enqueue ----------------------------------------------------------------------

    async def enqueue(
        self,
        order_id: str,
        items: list[QueuedItem],
        customer_name: str,
        *,
        payment_token: str = "",
        amount_cents: int = 0,
    ) -> None:
        """Returns once the queue has the order on disk; raises ServiceUnavailable."""
        request = _enqueue_request(
            order_id, items, customer_name, payment_token=payment_token, amount_cents=amount_cents
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.enqueue_retry_s
        backoff = Backoff(ENQUEUE_BACKOFF_MIN_S, ENQUEUE_BACKOFF_MAX_S)
        while True:
            generation = self._generation if self.watching else -1
            try:
                await self._enqueues.enqueue(request)
                self._enqueued[order_id] = generation
                return
            except grpc.aio.AioRpcError as exc:
                error = grpcutil.translate(QUEUE, exc)
                # Outcome unknown or refused to connect (the queue restarting): enqueue
                # is idempotent by order id, so retry within the budget. A full disk
                # does not free itself in seconds: no retry.
                delay = backoff.next()
                if (
                    not isinstance(error, grpcutil.ServiceUnavailable)
                    or error.detail.startswith("DISK_FULL")
                    or loop.time() + delay >= deadline
                ):
                    raise error from None
                log.info("enqueue order=%s: %s; retrying in %.2f s", order_id, error, delay)
                await asyncio.sleep(delay)

    # -- waiting for the execution ----------------------------------------------------

    async def wait_executed(self, order_id: str, timeout: float) -> ExecutionInfo | None:
        """The execution record, or None if not executed within `timeout` (no busy wait)."""
        known = self._recent.get(order_id)
        if known is not None:
            return known
        future: asyncio.Future[ExecutionInfo] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(order_id, []).append(future)
        try:
            if not (self.watching and self._enqueued.get(order_id) == self._generation):
                # Not enqueued under the live feed: it may have been executed
                # already, so ask once (the feed brings what happens from now on).
                self._spawn_check([order_id])
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return None
        finally:
            futures = self._waiters.get(order_id)
            if futures is not None:
                with contextlib.suppress(ValueError):
                    futures.remove(future)
                if not futures:
                    del self._waiters[order_id]
            if not future.done():
                future.cancel()

    def _resolve(self, order_id: str, info: ExecutionInfo) -> None:
        self._recent[order_id] = info
        seen = self._executions.get(order_id) or set()
        seen.add((info.executor, info.epoch, info.sequence))
        self._executions[order_id] = seen
        for future in self._waiters.get(order_id, []):
            if not future.done():
                future.set_result(info)

    def _spawn_check(self, order_ids: list[str]) -> None:
        task = asyncio.create_task(self._check(order_ids))
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _check(self, order_ids: list[str]) -> None:
        async def one(order_id: str) -> None:
            # Ask until the queue answers, for as long as someone waits for the order:
            # an execution missed while the feed was down never comes through it.
            backoff = Backoff(0.1, 2.0)
            while order_id in self._waiters:
                try:
                    info = await self.status(order_id)
                except (grpcutil.ServiceUnavailable, grpcutil.Rejected):
                    await asyncio.sleep(backoff.next())
                    continue
                if info is not None and info.finished:
                    self._resolve(order_id, info)
                return

        await asyncio.gather(*(one(o) for o in order_ids))

    async def _watch_loop(self) -> None:
        await reconnect(self._watch_once, Backoff(0.05, 1.0))

    async def _watch_once(self) -> bool:
        """One WatchExecutions stream; True when it stayed up long enough to count as working.

        A stream that fails at once (the queue is down) may still hand out its initial
        metadata, so back-off and the warning reset only once a stream has stayed up
        for a while: one warning per outage, not one per retry.
        """
        loop = asyncio.get_running_loop()
        call = self.queue.WatchExecutions(queue_pb2.WatchRequest())
        opened = loop.time()
        problem = "ended"
        try:
            await call.initial_metadata()  # the queue has subscribed us
            self._generation += 1
            self.watching = True
            # Executions may have happened while the stream was down.
            self._spawn_check(list(self._waiters))
            async for record in call:
                self._resolve(record.order_id.value, _info(record))
        except grpc.aio.AioRpcError as exc:
            problem = f"lost ({exc.code().name})"
        finally:
            self.watching = False
            call.cancel()
        stable = loop.time() - opened > STABLE_STREAM_S
        if stable:
            self._outage_reported = False
        if not self._outage_reported:
            log.warning("execution feed %s; reconnecting", problem)
            self._outage_reported = True
        return stable

    def executions(self, order_id: str) -> int:
        """How many distinct executions of the order this tracker has been told of."""
        return len(self._executions.get(order_id) or ())

    # -- status -------------------------------------------------------------------------

    async def status(self, order_id: str) -> ExecutionInfo | None:
        """The order's state in the queue, or None if the queue does not know it."""
        try:
            reply = await self.queue.GetOrder(
                common_pb2.OrderId(value=order_id), timeout=self.settings.rpc_timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise grpcutil.translate(QUEUE, exc) from None
        if reply.state == "executed" and reply.HasField("execution"):
            return _info(reply.execution)
        return ExecutionInfo(state=reply.state)
