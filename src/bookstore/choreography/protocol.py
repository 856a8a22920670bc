"""The vector-clock choreography at one service, as a pure state machine.

No sockets, no clocks, no protobuf, no asyncio, no randomness here. The adapter
(`engine.Participant`) feeds a `Node` what the orchestrator says (`on_init`,
`on_cancel`, `on_finalize`), what the peers say (`on_update`), what its own events
did (`on_done`, `on_stopped`) and the time (`on_tick(now)`), and carries out the
actions that come back: run or stop a local event, send the clock to the peers,
report to the orchestrator, acknowledge, forget an order, make an error visible.
A deterministic simulator can drive three nodes the same way.

Rules, as implemented (docs/architecture.md, "The checkout choreography"):

1. Per order a service keeps a vector clock (starting [0,0,0]) and the events it
   knows happened, each with the clock it carried.
2. An event is *ready* when each dependency is known and the own clock is >= that
   dependency's clock. Ready events of an initialised, uncancelled order run at
   once (a and b concurrently), each at most once.
3. When a local event finishes: tick the own entry and report the event, with its
   clock, to the orchestrator. A successful event is recorded as known and its
   clock sent to both peers; a failed one is reported to the orchestrator only:
   peers never learn it as known, so nothing that depends on it can run (its tick
   still reaches the final clock through the report and the cancel acknowledgement).
4. A peer's clock is merged (element-wise max, no tick) and its event recorded as
   known, also after a cancel; updates for an order not yet initialised are held
   until its InitOrder arrives.
5. Cancel: nothing more starts, events still running are asked to stop, and the
   CancelAck waits until each of them has stopped or finished. An event still
   running when a cancel arrives is part of the final clock if it finishes: it
   ticks and is reported like any other, before the CancelAck, whose clock
   covers it. One that stopped never ticks.
6. Finalize: consistent = own clock <= final clock. If so, forget the order and
   remember its final clock (bounded); else the error is visible (a `ClockError`)
   and the order is kept, flagged, until the TTL. Either way running events stop.
7. A message for a finalized order is late: one whose clock <= the final clock is
   ignored (logged at debug), otherwise it is a `ClockError`. An event finishing
   after its order's final clock is always one: its tick cannot be in it.
8. Orders never (cleanly) finalized expire `ttl_s` after their first message.

What changes nothing is logged here (at debug, or a warning); every error is an
action, so the adapter counts it and a simulator sees it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from bookstore import vclock
from bookstore.bounded import BoundedMapping
from bookstore.choreography.events import events_of
from bookstore.settings import CHECKOUT_SERVICES
from bookstore.vclock import Clock

log = logging.getLogger("bookstore.choreography")

FINALIZED_KEPT = 20_000  # final clocks remembered, to judge late messages (rule 7)


class Result(Protocol):
    """What a local event produced; the node reads only whether it succeeded."""

    @property
    def ok(self) -> bool: ...


R = TypeVar("R", bound=Result)


@dataclass(frozen=True)
class Run:
    """Start local event `event` of the order (rule 2)."""

    order_id: str
    event: str


@dataclass(frozen=True)
class Stop:
    """Stop these local events of the order, still running (rules 5, 6, 8)."""

    order_id: str
    events: tuple[str, ...]


@dataclass(frozen=True)
class SendClock:
    """A ClockUpdate for `event` to the peers `to` (rule 3)."""

    order_id: str
    event: str
    clock: Clock
    to: tuple[str, ...]


@dataclass(frozen=True)
class Report(Generic[R]):
    """An EventReport to the orchestrator (rules 3, 5)."""

    order_id: str
    event: str
    clock: Clock
    result: R


@dataclass(frozen=True)
class AckCancel:
    order_id: str
    clock: Clock


@dataclass(frozen=True)
class AckFinalize:
    order_id: str
    consistent: bool
    clock: Clock
    error: str  # "" when consistent


@dataclass(frozen=True)
class Forget:
    """The order is done here: drop whatever the adapter holds for it."""

    order_id: str


@dataclass(frozen=True)
class ClockError:
    """A clock error to make visible (rules 6, 7): logged as an error and counted."""

    order_id: str
    message: str


@dataclass(frozen=True)
class Expired:
    """Rule 8: dropped after the TTL without a clean finalize (followed by `Forget`)."""

    order_id: str
    age_s: float
    clock: Clock
    flagged: bool


Action = (
    Run | Stop | SendClock | Report[R] | AckCancel | AckFinalize | Forget | ClockError | Expired
)


@dataclass
class Order:
    """One order as one service sees it."""

    order_id: str
    created: float  # the `now` of its first message
    initialised: bool = False
    clock: Clock = vclock.ZERO
    known: dict[str, Clock] = field(default_factory=dict)  # event -> the clock it carried
    started: set[str] = field(default_factory=set)
    running: set[str] = field(default_factory=set)
    cancelled: bool = False
    acks_owed: int = 0  # CancelAcks waiting for running events to end (rule 5)
    final: Clock | None = None  # set by an inconsistent finalize (rule 6)

    @property
    def flagged(self) -> bool:
        """Finalize found it inconsistent."""
        return self.final is not None


class Node(Generic[R]):
    """One checkout service's side of the choreography (see the module's rules)."""

    def __init__(self, service: str, *, ttl_s: float, finalized_kept: int = FINALIZED_KEPT) -> None:
        self.service = service
        self.specs = events_of(service)
        self.peers = tuple(s for s in CHECKOUT_SERVICES if s != service)
        self.ttl_s = ttl_s
        self.orders: dict[str, Order] = {}
        self.finalized: BoundedMapping[str, Clock] = BoundedMapping(finalized_kept)
        self.events_run = 0
        self.orders_finalized = 0
        self.clock_errors = 0

    def _order(self, order_id: str, now: float) -> Order:
        order = self.orders.get(order_id)
        if order is None:
            order = self.orders[order_id] = Order(order_id, now)
        return order

    # ---- the orchestrator --------------------------------------------------------

    def on_init(self, order_id: str, now: float) -> list[Action[R]]:
        """InitOrder: the order may run (rule 2); late after its finalize (rule 7)."""
        if order_id in self.finalized:
            return self._late(order_id, vclock.ZERO, "InitOrder")
        order = self._order(order_id, now)
        if order.initialised:
            log.warning("order=%s InitOrder received twice; ignored", order_id)
            return []
        order.initialised = True
        return self._ready(order)

    def on_cancel(self, order_id: str, now: float) -> list[Action[R]]:
        """Rule 5: start nothing more, stop what runs, acknowledge once it has ended."""
        final = self.finalized.get(order_id)
        if final is not None:
            return [AckCancel(order_id, final)]
        order = self._order(order_id, now)
        order.cancelled = True
        order.acks_owed += 1
        return self._stop(order) + self._settled(order)

    def on_finalize(self, order_id: str, final: Clock) -> list[Action[R]]:
        """Rule 6: own clock <= final -> forget the order; otherwise a visible error."""
        order = self.orders.get(order_id)
        clock = order.clock if order is not None else self.finalized.get(order_id, vclock.ZERO)
        actions = self._stop(order) if order is not None else []
        if vclock.leq(clock, final):
            if order is not None:
                del self.orders[order_id]
                self.orders_finalized += 1
                actions.append(Forget(order_id))
            self.finalized[order_id] = final
            log.debug("order=%s finalized clock=%s", order_id, vclock.fmt(final))
            return [*actions, AckFinalize(order_id, True, clock, "")]
        error = (
            f"clock {vclock.fmt(clock)} of {self.service} is not <= final clock {vclock.fmt(final)}"
        )
        if order is not None:  # kept, flagged, until the TTL (rule 8)
            order.final = final
            order.cancelled = True
            order.acks_owed = 0  # the orchestrator no longer waits for them
        return [
            *actions,
            self._error(order_id, f"inconsistent finalize: {error}"),
            AckFinalize(order_id, False, clock, error),
        ]

    # ---- the peers ------------------------------------------------------------------

    def on_update(
        self, order_id: str, event: str, clock: Clock, now: float, sender: str = ""
    ) -> list[Action[R]]:
        """Rule 4: merge a peer's clock (no tick) and learn its event."""
        if order_id in self.finalized:
            return self._late(order_id, clock, f"update of event {event} from {sender}")
        order = self._order(order_id, now)
        order.clock = vclock.merge(order.clock, clock)
        order.known[event] = clock
        return self._ready(order)

    # ---- local events -----------------------------------------------------------------

    def on_done(self, order_id: str, event: str, result: R) -> list[Action[R]]:
        """Rule 3 (and 5, 7): a local event finished with `result`."""
        order = self.orders.get(order_id)
        if order is None or order.flagged:
            return self._finished_late(order_id, event, order)
        if event not in order.running:
            log.warning("order=%s event=%s finished but was not running; ignored", order_id, event)
            return []
        order.running.discard(event)
        order.clock = vclock.tick(order.clock, self.service)
        self.events_run += 1
        actions: list[Action[R]] = []
        if result.ok:  # a failed event is never "known": nothing after it may run
            order.known[event] = order.clock
            if not order.cancelled:
                actions.append(SendClock(order_id, event, order.clock, self.peers))
        actions.append(Report(order_id, event, order.clock, result))
        return actions + (self._settled(order) if order.cancelled else self._ready(order))

    def on_stopped(self, order_id: str, event: str) -> list[Action[R]]:
        """Rule 5: a local event stopped before it finished; it never ticks."""
        order = self.orders.get(order_id)
        if order is None or event not in order.running:
            return []
        order.running.discard(event)
        log.debug("order=%s event=%s stopped", order_id, event)
        return self._settled(order)

    # ---- time -------------------------------------------------------------------------

    def on_tick(self, now: float) -> list[Action[R]]:
        """Rule 8: orders older than the TTL expire."""
        actions: list[Action[R]] = []
        for order in [o for o in self.orders.values() if now - o.created > self.ttl_s]:
            del self.orders[order.order_id]
            age = now - order.created
            actions += self._stop(order)
            actions += [Expired(order.order_id, age, order.clock, order.flagged)]
            actions += [Forget(order.order_id)]
        return actions

    # ---- the rules' shared steps --------------------------------------------------------

    def _ready(self, order: Order) -> list[Action[R]]:
        """Rule 2: run every own event whose dependencies are known and covered."""
        if not order.initialised or order.cancelled:
            return []
        actions: list[Action[R]] = []
        for spec in self.specs:
            if spec.event in order.started:
                continue
            if all(
                dep in order.known and vclock.leq(order.known[dep], order.clock)
                for dep in spec.deps
            ):
                order.started.add(spec.event)
                order.running.add(spec.event)
                actions.append(Run(order.order_id, spec.event))
        return actions

    def _stop(self, order: Order) -> list[Action[R]]:
        """Stop the order's events still running, if any."""
        return [Stop(order.order_id, tuple(sorted(order.running)))] if order.running else []

    def _settled(self, order: Order) -> list[Action[R]]:
        """Rule 5: the CancelAcks owed, once no event of the order runs."""
        if order.running or not order.acks_owed:
            return []
        owed, order.acks_owed = order.acks_owed, 0
        return [AckCancel(order.order_id, order.clock) for _ in range(owed)]

    def _late(self, order_id: str, clock: Clock, what: str) -> list[Action[R]]:
        """Rule 7: a message after the final clock: fine if within it, else an error."""
        final = self.finalized[order_id]
        if vclock.leq(clock, final):
            log.debug(
                "order=%s late %s clock=%s <= final %s; ignored",
                order_id,
                what,
                vclock.fmt(clock),
                vclock.fmt(final),
            )
            return []
        return [
            self._error(
                order_id,
                f"late {what} after finalize: clock={vclock.fmt(clock)} "
                f"is not <= final {vclock.fmt(final)}",
            )
        ]

    def _finished_late(self, order_id: str, event: str, order: Order | None) -> list[Action[R]]:
        """Rule 7: an event that finished after its order's final clock."""
        final = order.final if order is not None else self.finalized.get(order_id)
        if order is not None:
            order.running.discard(event)
        if final is None:  # expired (rule 8): its error was already said
            log.debug("order=%s event=%s finished after the order expired", order_id, event)
            return []
        return [
            self._error(
                order_id,
                f"late event {event} finished after finalize: its tick is not in "
                f"the final clock {vclock.fmt(final)}",
            )
        ]

    def _error(self, order_id: str, message: str) -> ClockError:
        self.clock_errors += 1
        return ClockError(order_id, message)
