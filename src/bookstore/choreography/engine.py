"""The choreography's gRPC adapter: one servicer class for all three checkout services.

The protocol itself is `protocol.Node`, a pure state machine whose docstring lists
its rules (the vector clock, which events may run, cancel, the final-clock check,
late messages, the TTL). This servicer keeps everything the node must not see: the
orchestrator's `Session` streams and the peers' `Exchange` streams, protobuf, one
asyncio task per running event, the AI budget, spans and metrics. It turns each
message into one call of the node and carries out the actions that come back:

- `Run`: start the event's handler as a task (in its span, see `spans`); when it
  returns, `on_done`; when it is cancelled, `on_stopped`.
- `Stop`: cancel those tasks.
- `SendClock`: a `ClockUpdate` to each peer link, with the order's AI time spent.
- `Report`: an `EventReport` to the session that sent the order's InitOrder.
- `AckCancel`, `AckFinalize`: to the session that asked (a CancelAck waiting for a
  running event goes to the session of the last cancel).
- `Forget`: drop the order's data here; `ClockError`, `Expired`: log an ERROR.

The per-order lock is the event loop itself: every call of the node, and the actions
it returns, is one synchronous section with no `await` inside, so it runs atomically
with respect to every other handler of the order, at no cost.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

import grpc

from bookstore import vclock
from bookstore.ai.budget import AiBudget
from bookstore.backoff import cancelled
from bookstore.choreography import protocol, spans, wire
from bookstore.choreography.events import EVENTS, EventResult, EventSpec, Handler
from bookstore.choreography.links import Outbox, PeerLink
from bookstore.choreography.protocol import Node, Order
from bookstore.pb import checkout_pb2, checkout_pb2_grpc, common_pb2
from bookstore.settings import CHECKOUT_SERVICES
from bookstore.telemetry import metrics, propagation

log = logging.getLogger("bookstore.choreography")

ERROR_REASON = "We could not complete the checks of your order. Please try again."


class SessionLink:
    """One orchestrator `Session` stream: the outbox its writer task drains."""

    def __init__(self, peer: str) -> None:
        self.peer = peer
        self.outbox: Outbox[checkout_pb2.ParticipantMessage] = Outbox()


@dataclass(frozen=True)
class Finished:
    """What a local event's handler returned, and how long it took."""

    result: EventResult
    duration_ms: float

    @property
    def ok(self) -> bool:
        return self.result.ok


Action = protocol.Action[Finished]


@dataclass
class OrderIO:
    """What this adapter holds for an order the node holds."""

    budget: AiBudget
    order: checkout_pb2.OrderData | None = None
    session: SessionLink | None = None  # sent the InitOrder: the reports go there
    canceller: SessionLink | None = None  # sent the last cancel: a late CancelAck goes there
    # Event -> the trace context of its span, in the order they became known.
    contexts: dict[str, str] = field(default_factory=dict)
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)


class Participant(checkout_pb2_grpc.CheckoutParticipantServicer):
    """A checkout service: runs its own events of the choreography."""

    def __init__(
        self,
        service: str,
        handlers: Mapping[str, Handler],
        *,
        ai_order_budget_s: float = 0.0,
        unfinished_order_ttl_s: float = 60.0,
    ) -> None:
        self.service = service
        self.node: Node[Finished] = Node(service, ttl_s=unfinished_order_ttl_s)
        own = [s.event for s in self.node.specs]
        if set(own) != set(handlers):
            raise ValueError(f"{service} must handle exactly {own}")
        self.handlers = dict(handlers)
        self.ai_order_budget_s = ai_order_budget_s
        self.ttl_s = unfinished_order_ttl_s
        self.io: dict[str, OrderIO] = {}
        self.peers: dict[str, PeerLink] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._tracer = propagation.tracer(__name__)

    # The node's state and counters, as the tests and Stats read them.
    @property
    def orders(self) -> dict[str, Order]:
        return self.node.orders

    @property
    def events_run(self) -> int:
        return self.node.events_run

    @property
    def orders_finalized(self) -> int:
        return self.node.orders_finalized

    @property
    def clock_errors(self) -> int:
        return self.node.clock_errors

    # ---- lifecycle -------------------------------------------------------

    def connect_peers(self, addresses: Mapping[str, str]) -> None:
        """Open the long-lived Exchange streams to the two other services."""
        for peer in CHECKOUT_SERVICES:
            if peer == self.service or peer in self.peers:
                continue
            link = PeerLink(peer, addresses[peer])
            link.start()
            self.peers[peer] = link
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="ttl-sweep")

    async def close(self) -> None:
        await cancelled(self._sweeper)
        for io in self.io.values():
            for task in io.tasks.values():
                task.cancel()
        await asyncio.gather(*(p.close() for p in self.peers.values()))

    # ---- gRPC ------------------------------------------------------------

    async def Session(
        self,
        request_iterator: AsyncIterator[checkout_pb2.OrchestratorBatch],
        context: grpc.aio.ServicerContext[checkout_pb2.OrchestratorBatch, object],
    ) -> AsyncIterator[checkout_pb2.ParticipantBatch]:
        link = SessionLink(context.peer())
        await context.send_initial_metadata(())
        reader = asyncio.create_task(self._read_session(request_iterator, link))
        try:
            while True:
                messages = await link.outbox.take()
                if not messages:
                    if link.outbox.closed:
                        return
                    continue  # every message pending was refused as oversized
                yield checkout_pb2.ParticipantBatch(messages=messages)
        finally:
            link.outbox.close()
            reader.cancel()

    async def _read_session(
        self, request_iterator: AsyncIterator[checkout_pb2.OrchestratorBatch], link: SessionLink
    ) -> None:
        try:
            async for batch in request_iterator:
                for msg in batch.messages:
                    try:
                        self.on_orchestrator_message(msg, link)
                    except ValueError as exc:
                        log.error("malformed message from the orchestrator: %s", exc)
        finally:
            link.outbox.close()

    async def Exchange(
        self,
        request_iterator: AsyncIterator[checkout_pb2.PeerBatch],
        context: grpc.aio.ServicerContext[checkout_pb2.PeerBatch, common_pb2.Empty],
    ) -> common_pb2.Empty:
        async for batch in request_iterator:
            for update in batch.updates:
                try:
                    self.on_peer_update(update)
                except ValueError as exc:
                    log.error("malformed update from %s: %s", update.sender, exc)
        return common_pb2.Empty()

    async def Stats(
        self,
        request: common_pb2.Empty,
        context: grpc.aio.ServicerContext[common_pb2.Empty, checkout_pb2.StatsReply],
    ) -> checkout_pb2.StatsReply:
        return checkout_pb2.StatsReply(
            service=self.service,
            cached_orders=len(self.node.orders),
            pid=os.getpid(),
            events_run=self.node.events_run,
            orders_finalized=self.node.orders_finalized,
            clock_errors=self.node.clock_errors,
        )

    # ---- messages in -----------------------------------------------------

    def on_orchestrator_message(
        self, msg: checkout_pb2.OrchestratorMessage, link: SessionLink
    ) -> None:
        """One message of an orchestrator session (a synchronous, atomic section)."""
        kind = msg.WhichOneof("kind")
        now = time.monotonic()
        if kind == "init":
            order_id = msg.init.order.order_id.value
            actions = self.node.on_init(order_id, now)
            io = self._io(order_id)
            if io is not None and io.order is None:
                io.order, io.session = msg.init.order, link
        elif kind == "cancel":
            order_id = msg.cancel.order_id.value
            actions = self.node.on_cancel(order_id, now)
            if (io := self._io(order_id)) is not None:
                io.canceller = link
        elif kind == "finalize":
            final = vclock.from_pb(msg.finalize.final_clock)
            actions = self.node.on_finalize(msg.finalize.order_id.value, final)
        else:
            return
        self._apply(actions, link)

    def on_peer_update(self, update: checkout_pb2.ClockUpdate) -> None:
        """One ClockUpdate from a peer (a synchronous, atomic section)."""
        order_id = update.order_id.value
        clock = vclock.from_pb(update.clock)
        actions = self.node.on_update(
            order_id, update.event, clock, time.monotonic(), sender=update.sender
        )
        if (io := self._io(order_id)) is not None:
            io.budget.absorb(update.ai_spent_s)
            if update.trace_context:
                io.contexts[update.event] = update.trace_context
        self._apply(actions)

    def _io(self, order_id: str) -> OrderIO | None:
        """The order's data here, while the node holds the order (else None)."""
        if order_id not in self.node.orders:
            return None
        io = self.io.get(order_id)
        if io is None:
            io = self.io[order_id] = OrderIO(AiBudget(self.ai_order_budget_s))
        return io

    # ---- local events ----------------------------------------------------

    async def _run_event(self, order_id: str, io: OrderIO, spec: EventSpec) -> None:
        assert io.order is not None
        with spans.event_span(self._tracer, order_id, spec, io.contexts, io.order.trace_context):
            started = time.perf_counter()
            try:
                result = await self.handlers[spec.event](io.order, io.budget)
            except asyncio.CancelledError:
                raise  # stopped: `_ended` tells the node
            except Exception:
                log.exception("order=%s event=%s crashed", order_id, spec.event)
                result = EventResult(ok=False, reason=ERROR_REASON, answered_by="error")
            self._complete(order_id, io, spec, result, started)

    def _complete(
        self, order_id: str, io: OrderIO, spec: EventSpec, result: EventResult, started: float
    ) -> None:
        """The event's handler returned (inside the event's span)."""
        if result.ok and (context := spans.current_context()):
            io.contexts[spec.event] = context  # its ClockUpdates carry it on
        finished = Finished(result, (time.perf_counter() - started) * 1000.0)
        self._apply(self.node.on_done(order_id, spec.event, finished))

    # ---- actions out -----------------------------------------------------

    def _apply(self, actions: list[Action], reply: SessionLink | None = None) -> None:
        """Carry out the node's actions; `reply`: the session of the message handled."""
        for action in actions:
            if isinstance(action, protocol.Run):
                self._start(action)
            elif isinstance(action, protocol.Stop):
                io = self.io.get(action.order_id)
                for event in action.events:
                    if io is not None and event in io.tasks:
                        io.tasks[event].cancel()
            elif isinstance(action, protocol.SendClock):
                self._send_clock(action)
            elif isinstance(action, protocol.Report):
                self._report(action)
            elif isinstance(action, protocol.AckCancel | protocol.AckFinalize):
                self._acknowledge(action, reply)
            elif isinstance(action, protocol.Forget):
                self.io.pop(action.order_id, None)
            elif isinstance(action, protocol.ClockError):
                metrics.CLOCK_ERRORS.inc()
                log.error("order=%s %s", action.order_id, action.message)
            elif isinstance(action, protocol.Expired):
                log.error(
                    "order=%s dropped after %.0f s without a clean finalize (clock=%s%s)",
                    action.order_id,
                    action.age_s,
                    vclock.fmt(action.clock),
                    ", flagged inconsistent" if action.flagged else "",
                )

    def _start(self, run: protocol.Run) -> None:
        io = self.io[run.order_id]
        task = asyncio.create_task(self._run_event(run.order_id, io, EVENTS[run.event]))
        io.tasks[run.event] = task

        def ended(task: asyncio.Task[None]) -> None:
            io.tasks.pop(run.event, None)
            # Also a task cancelled before it began, which never ran a line of it.
            if task.cancelled():
                self._apply(self.node.on_stopped(run.order_id, run.event))

        task.add_done_callback(ended)

    def _send_clock(self, send: protocol.SendClock) -> None:
        io = self.io[send.order_id]
        context = io.contexts.get(send.event, "")
        update = wire.clock_update(send, self.service, io.budget.spent_s, context)
        for peer in send.to:
            if peer in self.peers:
                self.peers[peer].send(update)

    def _report(self, report: protocol.Report[Finished]) -> None:
        """An event's line in the log, its span's outcome, its EventReport."""
        result, duration_ms = report.result.result, report.result.duration_ms
        spec = EVENTS[report.event]
        metrics.EVENT_DURATION.labels(spec.event).observe(duration_ms / 1000.0)
        spans.record_outcome(report.clock, result)
        log.info(
            "order=%s event=%s (%s) clock=%s ok=%s answered_by=%s",
            report.order_id,
            spec.event,
            spec.name,
            vclock.fmt(report.clock),
            result.ok,
            result.answered_by,
        )
        io = self.io.get(report.order_id)
        if io is not None and io.session is not None:
            io.session.outbox.put(
                wire.event_report(
                    report.order_id, spec.event, self.service, report.clock, result, duration_ms
                )
            )

    def _acknowledge(
        self, ack: protocol.AckCancel | protocol.AckFinalize, reply: SessionLink | None
    ) -> None:
        if isinstance(ack, protocol.AckCancel):
            log.info("order=%s cancelled clock=%s", ack.order_id, vclock.fmt(ack.clock))
            if reply is None and (io := self.io.get(ack.order_id)) is not None:
                reply = io.canceller  # the ack waited for a running event
        if reply is not None:
            reply.outbox.put(wire.acknowledgement(ack))

    # ---- sweeping ----------------------------------------------------------

    async def _sweep_forever(self) -> None:
        interval = max(0.05, min(self.ttl_s / 2, 5.0))
        while True:
            await asyncio.sleep(interval)
            self.sweep(time.monotonic())

    def sweep(self, now: float) -> int:
        """Drop orders older than the TTL that were never (cleanly) finalized."""
        actions = self.node.on_tick(now)
        self._apply(actions)
        return sum(isinstance(a, protocol.Expired) for a in actions)
