"""The choreography engine: one servicer class for all three checkout services.

Per order a service keeps a vector clock (starting [0,0,0]) and the events it
knows happened, each with the clock it carried. Rules, as in
docs/architecture.md:

1. An event is *ready* when each dependency is known and the own clock is >=
   that dependency's clock. Ready events start at once, as asyncio tasks.
2. When a local event finishes, if the order was not cancelled: tick the own
   entry, record the event, send `ClockUpdate` to both peers and an
   `EventReport` to the orchestrator session that sent the order's
   `InitOrder`. A failed event is reported to the orchestrator only: peers
   never learn it as "known", so nothing that depends on it can run.
3. A received `ClockUpdate` is merged (element-wise max, no tick), its event
   recorded as known, its AI time absorbed into the order's budget; updates
   for an order not yet initialised are held (merged into a placeholder) until
   its `InitOrder` arrives.
4. `CancelOrder`: cancel running tasks, run nothing more, answer `CancelAck`
   with the clock at that moment.
5. `FinalizeOrder`: consistent = own clock <= final clock. If so forget the
   order; else log an ERROR and keep it flagged until the TTL sweep. Finalized
   order ids are remembered (bounded LRU, with their final clocks): a late
   message whose clock <= final is logged at debug, otherwise as an ERROR.
6. Orders never finalized are swept after `unfinished_order_ttl_s` (ERROR).

The per-order lock is the event loop itself: every change of an order's state
(rules 2-5) is one synchronous section with no `await` inside, so it runs
atomically with respect to every other handler of the order, at no cost.
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
from bookstore.bounded import BoundedMapping
from bookstore.choreography.events import EventResult, EventSpec, Handler, events_of
from bookstore.choreography.links import Outbox, PeerLink
from bookstore.pb import checkout_pb2, checkout_pb2_grpc, common_pb2
from bookstore.settings import CHECKOUT_SERVICES
from bookstore.vclock import Clock

log = logging.getLogger("bookstore.choreography")

FINALIZED_KEPT = 20_000
ERROR_REASON = "We could not complete the checks of your order. Please try again."


class SessionLink:
    """One orchestrator `Session` stream: the outbox its writer task drains."""

    def __init__(self, peer: str) -> None:
        self.peer = peer
        self.outbox: Outbox[checkout_pb2.ParticipantMessage] = Outbox()


@dataclass
class OrderState:
    order_id: str
    created: float
    order: checkout_pb2.OrderData | None = None
    session: SessionLink | None = None
    clock: Clock = vclock.ZERO
    known: dict[str, Clock] = field(default_factory=dict)
    started: set[str] = field(default_factory=set)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    cancelled: bool = False
    flagged: bool = False  # finalize found it inconsistent
    budget: AiBudget = field(default_factory=lambda: AiBudget(0.0))


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
        self.index = vclock.index_of(service)
        self.specs: list[EventSpec] = events_of(service)
        if {s.event for s in self.specs} != set(handlers):
            raise ValueError(f"{service} must handle exactly {[s.event for s in self.specs]}")
        self.handlers = dict(handlers)
        self.ai_order_budget_s = ai_order_budget_s
        self.ttl_s = unfinished_order_ttl_s
        self.orders: dict[str, OrderState] = {}
        self.finalized: BoundedMapping[str, Clock] = BoundedMapping(FINALIZED_KEPT)
        self.peers: dict[str, PeerLink] = {}
        self.events_run = 0
        self.orders_finalized = 0
        self.clock_errors = 0
        self._sweeper: asyncio.Task[None] | None = None

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
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        for state in self.orders.values():
            for task in state.tasks:
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
            cached_orders=len(self.orders),
            pid=os.getpid(),
            events_run=self.events_run,
            orders_finalized=self.orders_finalized,
            clock_errors=self.clock_errors,
        )

    # ---- messages from the orchestrator ------------------------------------

    def on_orchestrator_message(
        self, msg: checkout_pb2.OrchestratorMessage, link: SessionLink
    ) -> None:
        """One message of an orchestrator session (a synchronous, atomic section)."""
        kind = msg.WhichOneof("kind")
        if kind == "init":
            self._on_init(msg.init.order, link)
        elif kind == "cancel":
            self._on_cancel(msg.cancel.order_id.value, link)
        elif kind == "finalize":
            self._on_finalize(
                msg.finalize.order_id.value, vclock.from_pb(msg.finalize.final_clock), link
            )

    def _state(self, order_id: str) -> OrderState:
        state = self.orders.get(order_id)
        if state is None:
            state = OrderState(order_id, time.monotonic(), budget=AiBudget(self.ai_order_budget_s))
            self.orders[order_id] = state
        return state

    def _on_init(self, order: checkout_pb2.OrderData, link: SessionLink) -> None:
        order_id = order.order_id.value
        if order_id in self.finalized:
            self._late(order_id, vclock.ZERO, "InitOrder")
            return
        state = self._state(order_id)
        if state.order is not None:
            log.warning("order=%s InitOrder received twice; ignored", order_id)
            return
        state.order = order
        state.session = link
        if not state.cancelled:
            self._start_ready(state)

    def _on_cancel(self, order_id: str, link: SessionLink) -> None:
        final = self.finalized.get(order_id)
        if final is not None:
            clock = final
        else:
            state = self._state(order_id)
            state.cancelled = True
            for task in state.tasks:
                task.cancel()
            state.tasks.clear()
            clock = state.clock
        log.info("order=%s cancelled clock=%s", order_id, vclock.fmt(clock))
        link.outbox.put(
            checkout_pb2.ParticipantMessage(
                cancelled=checkout_pb2.CancelAck(
                    order_id=common_pb2.OrderId(value=order_id), clock=vclock.to_pb(clock)
                )
            )
        )

    def _on_finalize(self, order_id: str, final: Clock, link: SessionLink) -> None:
        state = self.orders.get(order_id)
        clock = state.clock if state is not None else self.finalized.get(order_id, vclock.ZERO)
        consistent = vclock.leq(clock, final)
        error = ""
        if consistent:
            if state is not None:
                for task in state.tasks:
                    task.cancel()
                del self.orders[order_id]
                self.orders_finalized += 1
            self._remember(order_id, final)
            log.debug("order=%s finalized clock=%s", order_id, vclock.fmt(final))
        else:
            self.clock_errors += 1
            if state is not None:  # kept, flagged, until the TTL sweep
                state.flagged = True
                state.cancelled = True
                for task in state.tasks:
                    task.cancel()
            error = (
                f"clock {vclock.fmt(clock)} of {self.service} is not <= "
                f"final clock {vclock.fmt(final)}"
            )
            log.error("order=%s inconsistent finalize: %s", order_id, error)
        link.outbox.put(
            checkout_pb2.ParticipantMessage(
                finalized=checkout_pb2.FinalizeAck(
                    order_id=common_pb2.OrderId(value=order_id),
                    consistent=consistent,
                    clock=vclock.to_pb(clock),
                    error=error,
                )
            )
        )

    def _remember(self, order_id: str, final: Clock) -> None:
        self.finalized[order_id] = final

    def _late(self, order_id: str, clock: Clock, what: str) -> None:
        final = self.finalized[order_id]
        if vclock.leq(clock, final):
            log.debug(
                "order=%s late %s clock=%s <= final %s; ignored",
                order_id,
                what,
                vclock.fmt(clock),
                vclock.fmt(final),
            )
        else:
            self.clock_errors += 1
            log.error(
                "order=%s late %s after finalize: clock=%s is not <= final %s",
                order_id,
                what,
                vclock.fmt(clock),
                vclock.fmt(final),
            )

    # ---- messages from peers -------------------------------------------------

    def on_peer_update(self, update: checkout_pb2.ClockUpdate) -> None:
        """One ClockUpdate from a peer (a synchronous, atomic section)."""
        order_id = update.order_id.value
        clock = vclock.from_pb(update.clock)
        if order_id in self.finalized:
            self._late(order_id, clock, f"update of event {update.event} from {update.sender}")
            return
        state = self._state(order_id)
        state.clock = vclock.merge(state.clock, clock)
        state.known[update.event] = clock
        state.budget.absorb(update.ai_spent_s)
        if state.order is not None and not state.cancelled:
            self._start_ready(state)

    # ---- local events ----------------------------------------------------

    def _start_ready(self, state: OrderState) -> None:
        for spec in self.specs:
            if spec.event in state.started:
                continue
            if all(
                dep in state.known and vclock.leq(state.known[dep], state.clock)
                for dep in spec.deps
            ):
                state.started.add(spec.event)
                task = asyncio.create_task(self._run_event(state, spec))
                state.tasks.add(task)
                task.add_done_callback(state.tasks.discard)

    async def _run_event(self, state: OrderState, spec: EventSpec) -> None:
        assert state.order is not None
        started = time.perf_counter()
        try:
            result = await self.handlers[spec.event](state.order, state.budget)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("order=%s event=%s crashed", state.order_id, spec.event)
            result = EventResult(ok=False, reason=ERROR_REASON, answered_by="error")
        self._complete(state, spec, result, (time.perf_counter() - started) * 1000.0)

    def _complete(
        self, state: OrderState, spec: EventSpec, result: EventResult, duration_ms: float
    ) -> None:
        if state.cancelled or self.orders.get(state.order_id) is not state:
            log.debug(
                "order=%s event=%s finished after cancel; dropped", state.order_id, spec.event
            )
            return
        clock = vclock.tick(state.clock, self.service)
        state.clock = clock
        if result.ok:  # a failed event is never "known": nothing after it may run
            state.known[spec.event] = clock
        self.events_run += 1
        log.info(
            "order=%s event=%s (%s) clock=%s ok=%s answered_by=%s",
            state.order_id,
            spec.event,
            spec.name,
            vclock.fmt(clock),
            result.ok,
            result.answered_by,
        )
        order_id = common_pb2.OrderId(value=state.order_id)
        clock_pb = vclock.to_pb(clock)
        if result.ok:
            update = checkout_pb2.ClockUpdate(
                order_id=order_id,
                event=spec.event,
                sender=self.service,
                clock=clock_pb,
                ai_spent_s=state.budget.spent_s,
            )
            for peer in self.peers.values():
                peer.send(update)
        if state.session is not None:
            state.session.outbox.put(
                checkout_pb2.ParticipantMessage(
                    event=checkout_pb2.EventReport(
                        order_id=order_id,
                        event=spec.event,
                        service=self.service,
                        clock=clock_pb,
                        ok=result.ok,
                        reason=result.reason,
                        suggestions=result.suggestions,
                        answered_by=result.answered_by,
                        duration_ms=duration_ms,
                    )
                )
            )
        if result.ok:
            self._start_ready(state)

    # ---- sweeping ----------------------------------------------------------

    async def _sweep_forever(self) -> None:
        interval = max(0.05, min(self.ttl_s / 2, 5.0))
        while True:
            await asyncio.sleep(interval)
            self.sweep(time.monotonic())

    def sweep(self, now: float) -> int:
        """Drop orders older than the TTL that were never (cleanly) finalized."""
        expired = [s for s in self.orders.values() if now - s.created > self.ttl_s]
        for state in expired:
            for task in state.tasks:
                task.cancel()
            del self.orders[state.order_id]
            log.error(
                "order=%s dropped after %.0f s without a clean finalize (clock=%s%s)",
                state.order_id,
                now - state.created,
                vclock.fmt(state.clock),
                ", flagged inconsistent" if state.flagged else "",
            )
        return len(expired)
