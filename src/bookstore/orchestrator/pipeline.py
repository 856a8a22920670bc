"""The checkout pipeline: the orchestrator's side of the choreography.

The HTTP layer calls `Pipeline.run` and reads the `Outcome`; it never sees
gRPC. `Pipeline` is the thin adapter around `flow.Checkout`, the state machine
that decides what happens to one order: it sends InitOrder, feeds the machine
every message, link change and tick, and carries out the actions that come back
(CancelOrder, FinalizeOrder, the answer). The steps of one order:

1. Refuse at once (ServiceUnavailable) when a service's Session stream is down.
2. InitOrder to all three, each with only what it needs: the full card to
   transaction verification, a CardSummary to fraud detection, nothing of the
   card to suggestions.
3. The machine cancels, finalizes and answers (see `flow`); an inconsistent
   FinalizeAck is logged as an ERROR and added to `Outcome.clock_errors`.

With tracing on, every copy of the order carries the caller's trace context (the HTTP
request's span), and the cancel and final-clock broadcasts are spans of that trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from bookstore import vclock
from bookstore.choreography.events import EVENT_NAMES
from bookstore.choreography.links import MAX_ITEM_BYTES
from bookstore.grpcutil import ServiceUnavailable
from bookstore.orchestrator.errors import ApiError
from bookstore.orchestrator.flow import (
    Action,
    Answer,
    Cancel,
    Checkout,
    EventRecord,
    Finalize,
    Outcome,
    Suggestion,
    Timeouts,
)
from bookstore.orchestrator.models import CheckoutRequest
from bookstore.orchestrator.order_copies import order_copies
from bookstore.orchestrator.sessions import Link, LinkEvents, LinkFactory, ServiceSession
from bookstore.pb import checkout_pb2, common_pb2
from bookstore.settings import CHECKOUT_SERVICES, Settings
from bookstore.telemetry import metrics, propagation, tracing

__all__ = ["CheckoutTimeout", "Outcome", "Pipeline", "ServiceStats"]

log = logging.getLogger(__name__)

_TRACER = propagation.tracer(__name__)

# How long a checkout waits for a Session stream that is (re)connecting.
CONNECT_GRACE_S = 0.5


class CheckoutTimeout(ServiceUnavailable):
    """The services did not finish the order within the checkout timeout."""


@dataclass(frozen=True)
class ServiceStats:
    service: str
    address: str
    healthy: bool
    pid: int | None
    cached_orders: int | None


class _Flight:
    """One order's machine, the caller's answer and the timer of the machine's deadline."""

    def __init__(self, machine: Checkout, trace_context: str) -> None:
        self.machine = machine
        self.trace_context = trace_context
        self.answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self.timer: asyncio.TimerHandle | None = None


class Pipeline:
    """Runs checkouts over long-lived streams to the three checkout services."""

    def __init__(self, settings: Settings, links: LinkFactory = ServiceSession) -> None:
        self.settings = settings
        self._new_link = links
        self._links: dict[str, Link] = {}
        self._flights: dict[str, _Flight] = {}
        self._forgot = asyncio.Event()  # set each time an order is forgotten
        self._timeouts = Timeouts(checkout=settings.checkout_timeout_s, ack=settings.rpc_timeout_s)

    async def start(self) -> None:
        """Open the three Session streams; waits (bounded) for them to come up."""
        for service in CHECKOUT_SERVICES:
            link = self._new_link(
                service,
                self.settings.checkout_address(service),
                LinkEvents(self._on_message, self._on_up, self._on_down),
                self.settings.rpc_timeout_s,
            )
            self._links[service] = link
            link.start()
        waits = [asyncio.create_task(link.became_up.wait()) for link in self._links.values()]
        _, pending = await asyncio.wait(waits, timeout=self.settings.rpc_timeout_s)
        for task in pending:
            task.cancel()

    async def close(self) -> None:
        """Close the streams once the orders already answered are finalized.

        A caller has its answer as soon as `Finalize` is queued on the links; closing
        the streams at once would drop the queued FinalizeOrders, and the services
        would keep those orders until their TTL. So the orders still finalizing get
        their FinalizeAcks first (each bounded by the ack timeout)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._timeouts.ack):
                while any(flight.machine.finalized for flight in self._flights.values()):
                    self._forgot.clear()
                    await self._forgot.wait()
        await asyncio.gather(*(link.close() for link in self._links.values()))
        self._links.clear()

    async def run(self, order_id: str, request: CheckoutRequest) -> Outcome:
        """Run one order to its end (approved or rejected, finalized).

        Raises ServiceUnavailable (or CheckoutTimeout) when a checkout service
        is down or too slow; the order is then cancelled in the others.
        """
        await self._wait_connected()
        orders = order_copies(order_id, request)
        trace_context = propagation.inject() if tracing.enabled() else ""
        for data in orders.values():
            data.trace_context = trace_context
        inits = {
            service: checkout_pb2.OrchestratorMessage(init=checkout_pb2.InitOrder(order=data))
            for service, data in orders.items()
        }
        if any(init.ByteSize() > MAX_ITEM_BYTES for init in inits.values()):
            # Refused before anything is sent: only this order fails, no stream breaks.
            raise ApiError(413, "ORDER_TOO_LARGE", "The order is too large to be checked.")
        machine = Checkout(order_id, self._links, self._now(), self._timeouts)
        flight = self._flights[order_id] = _Flight(machine, trace_context)
        for service, init in inits.items():
            self._links[service].send(init)
        self._arm(flight)
        try:
            answer = await asyncio.shield(flight.answer)
        except asyncio.CancelledError:
            # The order is still cancelled and finalized with what was reported.
            self._apply(flight, machine.on_abandon(self._now()))
            raise
        if answer.down is not None:
            raise ServiceUnavailable(answer.down, "the link broke during the checkout")
        if answer.timed_out:
            raise CheckoutTimeout(
                "checkout", f"no outcome within {self.settings.checkout_timeout_s} s"
            )
        return answer.outcome

    async def _wait_connected(self) -> None:
        if not self._links:
            raise ServiceUnavailable("checkout", "pipeline not started")
        for service, link in self._links.items():
            if not link.up:
                # A link that is (re)connecting gets a short grace; a service that
                # is down is refused within it.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(link.became_up.wait(), CONNECT_GRACE_S)
                if not link.up:
                    raise ServiceUnavailable(service, "not connected")

    @property
    def in_flight(self) -> int:
        """Orders not yet forgotten (finalized and acknowledged, or given up on)."""
        return len(self._flights)

    async def stats(self) -> list[ServiceStats]:
        """Health, pid and cache size of each checkout service."""
        return list(await asyncio.gather(*(self._stats_of(s) for s in CHECKOUT_SERVICES)))

    async def _stats_of(self, service: str) -> ServiceStats:
        address = self.settings.checkout_address(service)
        link = self._links.get(service)
        answer = None if link is None else await link.stats(self.settings.rpc_timeout_s)
        if answer is None:
            return ServiceStats(service, address, False, None, None)
        return ServiceStats(service, address, True, *answer)

    # ---- carrying out the machine's actions -------------------------------------------

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    def _apply(self, flight: _Flight, actions: list[Action]) -> None:
        order_id = flight.machine.order_id
        for action in actions:
            if isinstance(action, Cancel):
                metrics.CANCELS.inc()
                cancel = checkout_pb2.CancelOrder(
                    order_id=common_pb2.OrderId(value=order_id), reason=action.reason
                )
                with propagation.order_step(
                    _TRACER, "cancel broadcast", order_id, parent=flight.trace_context
                ):
                    self._send(action.services, checkout_pb2.OrchestratorMessage(cancel=cancel))
            elif isinstance(action, Finalize):
                finalize = checkout_pb2.FinalizeOrder(
                    order_id=common_pb2.OrderId(value=order_id),
                    final_clock=vclock.to_pb(action.final_clock),
                )
                with propagation.order_step(
                    _TRACER,
                    "final clock broadcast",
                    order_id,
                    parent=flight.trace_context,
                    attributes={propagation.VECTOR_CLOCK: list(action.final_clock)},
                ):
                    self._send(action.services, checkout_pb2.OrchestratorMessage(finalize=finalize))
            elif not flight.answer.done():
                flight.answer.set_result(action)
        self._arm(flight)

    def _send(self, services: frozenset[str], message: checkout_pb2.OrchestratorMessage) -> None:
        for service in services:
            self._links[service].send(message)

    def _arm(self, flight: _Flight) -> None:
        """Tick the machine at its deadline; forget the order once it is done."""
        machine = flight.machine
        if flight.timer is not None and flight.timer.when() == machine.deadline:
            return
        if flight.timer is not None:
            flight.timer.cancel()
            flight.timer = None
        if machine.done:
            self._flights.pop(machine.order_id, None)
            self._forgot.set()
        elif machine.deadline is not None:
            loop = asyncio.get_running_loop()
            flight.timer = loop.call_at(machine.deadline, self._tick, flight)

    def _tick(self, flight: _Flight) -> None:
        flight.timer = None
        self._apply(flight, flight.machine.on_tick(self._now()))

    # ---- messages from the services -------------------------------------------------

    def _on_message(self, service: str, message: checkout_pb2.ParticipantMessage) -> None:
        kind = message.WhichOneof("kind")
        if kind == "event":
            self._on_report(service, message.event)
        elif kind == "cancelled":
            ack = message.cancelled
            flight = self._flights.get(ack.order_id.value)
            if flight is not None:
                clock = vclock.from_pb(ack.clock)
                self._apply(flight, flight.machine.on_cancel_ack(service, clock, self._now()))
        elif kind == "finalized":
            self._on_finalize_ack(service, message.finalized)

    def _on_report(self, service: str, report: checkout_pb2.EventReport) -> None:
        flight = self._flights.get(report.order_id.value)
        if flight is None or flight.machine.finalized:
            log.debug("order=%s late report of event %s", report.order_id.value, report.event)
            return
        record = EventRecord(
            event=report.event,
            name=EVENT_NAMES.get(report.event, report.event),
            service=service,
            clock=vclock.from_pb(report.clock),
            ok=report.ok,
            reason=report.reason,
            answered_by=report.answered_by,
            at=time.time(),
            duration_ms=report.duration_ms,
        )
        suggestions = [Suggestion(b.book_id, b.title, b.author) for b in report.suggestions]
        actions = flight.machine.on_report(record, suggestions, self._now(), report.payment_token)
        self._apply(flight, actions)

    def _on_finalize_ack(self, service: str, ack: checkout_pb2.FinalizeAck) -> None:
        order_id = ack.order_id.value
        error = None
        if not ack.consistent:
            error = ack.error or f"{service} clock {vclock.fmt(ack.clock.entries)} > final clock"
            log.error("order=%s inconsistent clock at finalize: %s", order_id, error)
            metrics.CLOCK_ERRORS.inc()
        flight = self._flights.get(order_id)
        if flight is not None:
            self._apply(flight, flight.machine.on_finalize_ack(service, error, self._now()))

    def _on_up(self, service: str) -> None:
        for flight in self._flights.values():
            flight.machine.on_up(service)

    def _on_down(self, service: str) -> None:
        now = self._now()
        for flight in list(self._flights.values()):
            self._apply(flight, flight.machine.on_down(service, now))
