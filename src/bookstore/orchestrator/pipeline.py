"""The checkout pipeline: the orchestrator's side of the choreography.

The HTTP layer calls `Pipeline.run` and reads the `Outcome`; it never sees
gRPC. The steps of one order:

1. Refuse at once (ServiceUnavailable) when a service's Session stream is down.
2. InitOrder to all three, each with only what it needs: the full card to
   transaction verification, a CardSummary to fraud detection, nothing of the
   card to suggestions.
3. Wait (at most checkout_timeout_s) for the first failed EventReport, or for
   all six events to report success (f carries the suggestions).
4. On a failure, a service going down or the timeout: CancelOrder to every
   reachable service and gather their CancelAcks (bounded wait).
5. Final clock = element-wise max of every reported clock (event reports and
   cancel acks); FinalizeOrder to all. FinalizeAcks are collected after
   `run` returns: an inconsistent one is logged as an ERROR and added to
   `Outcome.clock_errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

import grpc

from bookstore import vclock
from bookstore.cards import summarize_card
from bookstore.choreography.events import EVENT_NAMES, EVENTS
from bookstore.grpcutil import ServiceUnavailable
from bookstore.orchestrator.links import ServiceSession
from bookstore.orchestrator.models import CheckoutRequest
from bookstore.pb import checkout_pb2, common_pb2
from bookstore.settings import CHECKOUT_SERVICES, Settings
from bookstore.vclock import Clock

log = logging.getLogger(__name__)

TV, FD, SUG = CHECKOUT_SERVICES
INT32_MAX = 2**31 - 1
# How long a checkout waits for a Session stream that is (re)connecting.
CONNECT_GRACE_S = 0.5


class CheckoutTimeout(ServiceUnavailable):
    """The services did not finish the order within the checkout timeout."""


@dataclass(frozen=True)
class SuggestedBook:
    book_id: str
    title: str
    author: str


@dataclass(frozen=True)
class EventRecord:
    event: str  # "a".."f"
    name: str  # "items", "user-data", "card", "user-fraud", "card-fraud", "suggestions"
    service: str
    clock: Clock
    ok: bool
    reason: str
    answered_by: str
    at: float  # unix time the report arrived
    duration_ms: float


@dataclass
class Outcome:
    order_id: str
    approved: bool
    reason: str  # empty when approved
    suggestions: list[SuggestedBook] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    cancel_clocks: dict[str, Clock] = field(default_factory=dict)  # service -> clock at cancel
    final_clock: Clock | None = None
    clock_errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ServiceStats:
    service: str
    address: str
    healthy: bool
    pid: int | None
    cached_orders: int | None


class Pipeline:
    """Runs checkouts over long-lived streams to the three checkout services."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._links: dict[str, ServiceSession] = {}
        self._flights: dict[str, _Flight] = {}

    async def start(self) -> None:
        """Open the three Session streams; waits (bounded) for them to come up."""
        for service in CHECKOUT_SERVICES:
            link = ServiceSession(
                service,
                self.settings.checkout_address(service),
                self._on_message,
                self._on_down,
                connect_timeout_s=self.settings.rpc_timeout_s,
            )
            self._links[service] = link
            link.start()
        waits = [asyncio.create_task(link.became_up.wait()) for link in self._links.values()]
        _, pending = await asyncio.wait(waits, timeout=self.settings.rpc_timeout_s)
        for task in pending:
            task.cancel()

    async def close(self) -> None:
        await asyncio.gather(*(link.close() for link in self._links.values()))
        self._links.clear()

    async def run(self, order_id: str, request: CheckoutRequest) -> Outcome:
        """Run one order to its end (approved or rejected, finalized).

        Raises ServiceUnavailable (or CheckoutTimeout) when a checkout service
        is down or too slow; the order is then cancelled in the others.
        """
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
        orders = build_orders(order_id, request)
        flight = _Flight(order_id)
        self._flights[order_id] = flight
        for service, data in orders.items():
            self._links[service].send(
                checkout_pb2.OrchestratorMessage(init=checkout_pb2.InitOrder(order=data))
            )
        timed_out = False
        try:
            await asyncio.wait_for(flight.decided.wait(), self.settings.checkout_timeout_s)
        except TimeoutError:
            timed_out = True
        except asyncio.CancelledError:
            await self._abort(flight, "the checkout was abandoned")
            raise
        try:
            if timed_out or flight.failed is not None or flight.down is not None:
                await self._cancel(flight, _cancel_reason(flight, timed_out))
        finally:
            # Even if the caller gives up while the cancel acks are awaited, the
            # order is finalized (and forgotten here) with what was reported.
            outcome = flight.outcome()
            self._finalize(flight, outcome)
        if flight.down is not None and flight.failed is None:
            raise ServiceUnavailable(flight.down, "the link broke during the checkout")
        if timed_out and flight.failed is None:
            raise CheckoutTimeout(
                "checkout", f"no outcome within {self.settings.checkout_timeout_s} s"
            )
        return outcome

    async def stats(self) -> list[ServiceStats]:
        """Health, pid and cache size of each checkout service."""
        return list(await asyncio.gather(*(self._stats_of(s) for s in CHECKOUT_SERVICES)))

    async def _stats_of(self, service: str) -> ServiceStats:
        address = self.settings.checkout_address(service)
        link = self._links.get(service)
        if link is None:
            return ServiceStats(service, address, False, None, None)
        try:
            reply = await link.stub.Stats(common_pb2.Empty(), timeout=self.settings.rpc_timeout_s)
        except grpc.RpcError:
            return ServiceStats(service, address, False, None, None)
        return ServiceStats(service, address, True, int(reply.pid), int(reply.cached_orders))

    # ---- cancel and finalize ------------------------------------------------

    async def _cancel(self, flight: _Flight, reason: str) -> None:
        message = checkout_pb2.OrchestratorMessage(
            cancel=checkout_pb2.CancelOrder(
                order_id=common_pb2.OrderId(value=flight.order_id), reason=reason
            )
        )
        flight.awaiting_cancel = {s for s, link in self._links.items() if link.up}
        if not flight.awaiting_cancel:
            return
        flight.cancels_in = asyncio.Event()
        for service in flight.awaiting_cancel:
            self._links[service].send(message)
        try:
            await asyncio.wait_for(flight.cancels_in.wait(), self.settings.rpc_timeout_s)
        except TimeoutError:
            log.warning(
                "order=%s no CancelAck from %s", flight.order_id, ", ".join(flight.awaiting_cancel)
            )

    async def _abort(self, flight: _Flight, reason: str) -> None:
        try:
            await self._cancel(flight, reason)
        finally:
            self._finalize(flight, flight.outcome())

    def _finalize(self, flight: _Flight, outcome: Outcome) -> None:
        final = vclock.merge_all([*flight.clocks(), *flight.cancel_clocks.values()])
        outcome.final_clock = final
        flight.result = outcome
        message = checkout_pb2.OrchestratorMessage(
            finalize=checkout_pb2.FinalizeOrder(
                order_id=common_pb2.OrderId(value=flight.order_id), final_clock=vclock.to_pb(final)
            )
        )
        flight.awaiting_finalize = {s for s, link in self._links.items() if link.up}
        for service in flight.awaiting_finalize:
            self._links[service].send(message)
        if not flight.awaiting_finalize:
            self._flights.pop(flight.order_id, None)
            return
        loop = asyncio.get_running_loop()
        flight.expiry = loop.call_later(
            self.settings.rpc_timeout_s, self._finalize_expired, flight.order_id
        )

    def _finalize_expired(self, order_id: str) -> None:
        flight = self._flights.pop(order_id, None)
        if flight is not None and flight.awaiting_finalize:
            log.warning(
                "order=%s no FinalizeAck from %s", order_id, ", ".join(flight.awaiting_finalize)
            )

    # ---- messages from the services -------------------------------------------

    def _on_message(self, service: str, message: checkout_pb2.ParticipantMessage) -> None:
        kind = message.WhichOneof("kind")
        if kind == "event":
            self._on_report(service, message.event)
        elif kind == "cancelled":
            self._on_cancel_ack(service, message.cancelled)
        elif kind == "finalized":
            self._on_finalize_ack(service, message.finalized)

    def _on_report(self, service: str, report: checkout_pb2.EventReport) -> None:
        flight = self._flights.get(report.order_id.value)
        if flight is None or flight.result is not None:
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
        flight.events.append(record)
        if not report.ok:
            if flight.failed is None:
                flight.failed = record
                flight.decided.set()
            return
        flight.succeeded.add(report.event)
        if report.event == "f":
            flight.suggestions = [
                SuggestedBook(b.book_id, b.title, b.author) for b in report.suggestions
            ]
        if len(flight.succeeded) == len(EVENTS):
            flight.decided.set()

    def _on_cancel_ack(self, service: str, ack: checkout_pb2.CancelAck) -> None:
        flight = self._flights.get(ack.order_id.value)
        if flight is None or service not in flight.awaiting_cancel:
            return
        flight.cancel_clocks[service] = vclock.from_pb(ack.clock)
        flight.awaiting_cancel.discard(service)
        if not flight.awaiting_cancel and flight.cancels_in is not None:
            flight.cancels_in.set()

    def _on_finalize_ack(self, service: str, ack: checkout_pb2.FinalizeAck) -> None:
        order_id = ack.order_id.value
        flight = self._flights.get(order_id)
        if not ack.consistent:
            error = ack.error or f"{service} clock {vclock.fmt(ack.clock.entries)} > final clock"
            log.error("order=%s inconsistent clock at finalize: %s", order_id, error)
            if flight is not None and flight.result is not None:
                flight.result.clock_errors.append(error)
        if flight is None:
            return
        flight.awaiting_finalize.discard(service)
        if not flight.awaiting_finalize:
            self._flights.pop(order_id, None)
            if flight.expiry is not None:
                flight.expiry.cancel()

    def _on_down(self, service: str) -> None:
        for flight in list(self._flights.values()):
            if flight.result is None and flight.down is None:
                flight.down = service
                flight.decided.set()
            if service in flight.awaiting_cancel:
                flight.awaiting_cancel.discard(service)
                if not flight.awaiting_cancel and flight.cancels_in is not None:
                    flight.cancels_in.set()
            if service in flight.awaiting_finalize:
                flight.awaiting_finalize.discard(service)
                if not flight.awaiting_finalize:
                    self._flights.pop(flight.order_id, None)
                    if flight.expiry is not None:
                        flight.expiry.cancel()


class _Flight:
    """What the pipeline knows about one order in flight."""

    def __init__(self, order_id: str) -> None:
        self.order_id = order_id
        self.decided = asyncio.Event()
        self.events: list[EventRecord] = []
        self.succeeded: set[str] = set()
        self.failed: EventRecord | None = None
        self.down: str | None = None
        self.suggestions: list[SuggestedBook] = []
        self.cancel_clocks: dict[str, Clock] = {}
        self.awaiting_cancel: set[str] = set()
        self.cancels_in: asyncio.Event | None = None
        self.awaiting_finalize: set[str] = set()
        self.expiry: asyncio.TimerHandle | None = None
        self.result: Outcome | None = None

    def clocks(self) -> list[Clock]:
        return [record.clock for record in self.events]

    def outcome(self) -> Outcome:
        approved = self.failed is None and len(self.succeeded) == len(EVENTS)
        return Outcome(
            order_id=self.order_id,
            approved=approved,
            reason="" if approved or self.failed is None else self.failed.reason,
            suggestions=list(self.suggestions) if approved else [],
            events=list(self.events),
            cancel_clocks=dict(self.cancel_clocks),
        )


def _cancel_reason(flight: _Flight, timed_out: bool) -> str:
    if flight.failed is not None:
        return f"event {flight.failed.event} failed"
    if flight.down is not None:
        return f"{flight.down} is unavailable"
    return "checkout timed out" if timed_out else "cancelled"


def build_orders(order_id: str, request: CheckoutRequest) -> dict[str, checkout_pb2.OrderData]:
    """The copy of the order each service gets (the card only where it is needed)."""
    user = request.user
    address = request.billingAddress
    device = request.device
    browser = request.browser
    base = checkout_pb2.OrderData(
        order_id=common_pb2.OrderId(value=order_id),
        items=[
            common_pb2.OrderItem(
                book_id=item.bookId or "",
                title=item.name or "",
                quantity=max(-INT32_MAX, min(INT32_MAX, item.quantity or 0)),
            )
            for item in request.items or []
        ],
        customer=checkout_pb2.Customer(
            name=(user.name or "") if user else "", contact=(user.contact or "") if user else ""
        ),
        terms_accepted=request.terms_accepted,
        user_comment=request.userComment or "",
        shipping_method=request.shippingMethod or "",
        discount_code=request.discountCode or "",
        gift_message=request.giftMessage or "",
        gift_wrapping=bool(request.giftWrapping),
        client=checkout_pb2.ClientInfo(
            device_type=(device.type or "") if device else "",
            device_model=(device.model or "") if device else "",
            device_os=(device.os or "") if device else "",
            browser_name=(browser.name or "") if browser else "",
            browser_version=(browser.version or "") if browser else "",
            app_version=request.appVersion or "",
            screen_resolution=request.screenResolution or "",
            referrer=request.referrer or "",
            device_language=request.deviceLanguage or "",
        ),
    )
    if address is not None:
        base.billing_address.CopyFrom(
            checkout_pb2.Address(
                street=address.street or "",
                city=address.city or "",
                state=address.state or "",
                zip=address.zip or "",
                country=address.country or "",
            )
        )
    card = request.creditCard
    number = (card.number or "") if card else ""
    expiry = (card.expirationDate or "") if card else ""
    tv = checkout_pb2.OrderData()
    tv.CopyFrom(base)
    tv.card.CopyFrom(
        checkout_pb2.Card(number=number, expiration=expiry, cvv=(card.cvv or "") if card else "")
    )
    fd = checkout_pb2.OrderData()
    fd.CopyFrom(base)
    fd.card_summary.CopyFrom(summarize_card(number, expiry))
    return {TV: tv, FD: fd, SUG: base}
