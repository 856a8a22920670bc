"""One order's checkout as a pure state machine: events in, actions out, time passed in.

No sockets and no clocks here. The adapter (`pipeline.Pipeline`) feeds it what the
services say (`on_report`, `on_cancel_ack`, `on_finalize_ack`), what the links do
(`on_down`, `on_up`), the caller giving up (`on_abandon`) and the time (`on_tick(now)`
once `deadline` has passed), and carries out the actions that come back.

Rules, as implemented:

1. RUNNING: event reports are collected. The first failed report, a service's link
   going down, or `checkout_timeout` passing without six successes -> CANCELLING.
   Six successful reports -> FINALIZING (nothing to cancel).
2. CANCELLING: `Cancel` goes to every connected service; their CancelAcks (with
   the clock at the moment of the cancel) are awaited for at most `ack_timeout`. The
   last ack, the last awaited service going down, the wait expiring or the caller
   giving up -> FINALIZING. No connected service -> FINALIZING at once.
3. FINALIZING: the final clock is the element-wise max of every reported clock
   (event reports and cancel acks); `Finalize` goes to every connected service and
   `Answer` to the caller. Reports arriving from now on are late and ignored.
   The last FinalizeAck, the last awaited service going down or `ack_timeout`
   passing -> DONE (the adapter forgets the order).
4. The answer: a link that went down before a failure was reported -> the service is
   unavailable; the timeout passing before a failure was reported -> timed out;
   otherwise the outcome (approved only with six successes, no failure and no
   cancel: events still running at a cancel report into the final clock, but a
   cancelled checkout is never approved).
5. The caller giving up while RUNNING cancels the order ("the checkout was
   abandoned"); while CANCELLING it finalizes at once with what was reported, so the
   services never keep an order nobody finalizes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from bookstore import vclock
from bookstore.choreography.events import EVENTS
from bookstore.vclock import Clock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Suggestion:
    """A book suggestions' event f proposes."""

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
    suggestions: list[Suggestion] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    cancel_clocks: dict[str, Clock] = field(default_factory=dict)  # service -> clock at cancel
    final_clock: Clock | None = None
    clock_errors: list[str] = field(default_factory=list)
    payment_token: str = ""  # event c's token for the card (approved orders)


class State(Enum):
    RUNNING = 1
    CANCELLING = 2
    FINALIZING = 3
    DONE = 4


@dataclass(frozen=True)
class Cancel:
    services: frozenset[str]
    reason: str


@dataclass(frozen=True)
class Finalize:
    services: frozenset[str]
    final_clock: Clock


@dataclass(frozen=True)
class Answer:
    """What the caller is told: the outcome, unless `down` or `timed_out` says otherwise."""

    outcome: Outcome
    down: str | None = None  # the service whose link broke before any failure
    timed_out: bool = False  # no failure and no six successes within the timeout


Action = Cancel | Finalize | Answer


@dataclass(frozen=True)
class Timeouts:
    checkout: float  # from the start to a decision
    ack: float  # the wait for CancelAcks, then for FinalizeAcks


class Checkout:
    """One order from InitOrder to the last FinalizeAck (see the module's rules)."""

    def __init__(
        self, order_id: str, connected: Iterable[str], now: float, timeouts: Timeouts
    ) -> None:
        self.order_id = order_id
        self.state = State.RUNNING
        self.deadline: float | None = now + timeouts.checkout
        self._timeouts = timeouts
        self._connected = set(connected)
        self._events: list[EventRecord] = []
        self._succeeded: set[str] = set()
        self._failed: EventRecord | None = None
        self._down: str | None = None
        self._timed_out = False
        self._cancelled = False
        self._suggestions: list[Suggestion] = []
        self._payment_token = ""
        self._cancel_clocks: dict[str, Clock] = {}
        self._awaiting: set[str] = set()  # acks of the current stage
        self._result: Outcome | None = None

    @property
    def done(self) -> bool:
        return self.state is State.DONE

    @property
    def finalized(self) -> bool:
        """The final clock is out: reports from now on are late."""
        return self._result is not None

    # ---- events ---------------------------------------------------------------------

    def on_report(
        self,
        record: EventRecord,
        suggestions: Iterable[Suggestion],
        now: float,
        payment_token: str = "",
    ) -> list[Action]:
        if self.finalized:
            return []
        self._events.append(record)
        if not record.ok:
            if self._failed is None:
                self._failed = record
                return self._decided(now)
            return []
        self._succeeded.add(record.event)
        if record.event == "f":
            self._suggestions = list(suggestions)
        if record.event == "c":
            self._payment_token = payment_token
        if len(self._succeeded) == len(EVENTS):
            return self._decided(now)
        return []

    def on_cancel_ack(self, service: str, clock: Clock, now: float) -> list[Action]:
        if self.state is not State.CANCELLING or service not in self._awaiting:
            return []
        self._cancel_clocks[service] = clock
        return self._acked(service, now)

    def on_finalize_ack(self, service: str, error: str | None, now: float) -> list[Action]:
        if error is not None and self._result is not None:
            self._result.clock_errors.append(error)
        if self.state is not State.FINALIZING:
            return []
        return self._acked(service, now)

    def on_down(self, service: str, now: float) -> list[Action]:
        self._connected.discard(service)
        if self._result is None and self._down is None:
            self._down = service
            if self.state is State.RUNNING:
                return self._decided(now)
        if self.state in (State.CANCELLING, State.FINALIZING):
            return self._acked(service, now)
        return []

    def on_up(self, service: str) -> None:
        self._connected.add(service)

    def on_abandon(self, now: float) -> list[Action]:
        """The caller gave up waiting for the answer."""
        if self.state is State.RUNNING:
            return self._cancel("the checkout was abandoned", now)
        if self.state is State.CANCELLING:
            return self._finalize(now)
        return []

    def on_tick(self, now: float) -> list[Action]:
        if self.deadline is None or now < self.deadline:
            return []
        if self.state is State.RUNNING:
            self._timed_out = True
            return self._decided(now)
        missing = ", ".join(sorted(self._awaiting))
        if self.state is State.CANCELLING:
            log.warning("order=%s no CancelAck from %s", self.order_id, missing)
            return self._finalize(now)
        log.warning("order=%s no FinalizeAck from %s", self.order_id, missing)
        self._end()
        return []

    # ---- transitions ----------------------------------------------------------------

    def _decided(self, now: float) -> list[Action]:
        if self.state is not State.RUNNING:
            return []
        if self._failed is not None:
            return self._cancel(f"event {self._failed.event} failed", now)
        if self._down is not None:
            return self._cancel(f"{self._down} is unavailable", now)
        if self._timed_out:
            return self._cancel("checkout timed out", now)
        return self._finalize(now)

    def _cancel(self, reason: str, now: float) -> list[Action]:
        self.state = State.CANCELLING
        self._cancelled = True
        self._awaiting = set(self._connected)
        if not self._awaiting:
            return self._finalize(now)
        self.deadline = now + self._timeouts.ack
        return [Cancel(frozenset(self._awaiting), reason)]

    def _acked(self, service: str, now: float) -> list[Action]:
        if service not in self._awaiting:
            return []
        self._awaiting.discard(service)
        if self._awaiting:
            return []
        if self.state is State.CANCELLING:
            return self._finalize(now)
        self._end()
        return []

    def _finalize(self, now: float) -> list[Action]:
        outcome = self._outcome()
        outcome.final_clock = vclock.merge_all(
            [*(e.clock for e in self._events), *self._cancel_clocks.values()]
        )
        self._result = outcome
        self.state = State.FINALIZING
        self._awaiting = set(self._connected)
        answer = Answer(
            outcome,
            down=self._down if self._failed is None else None,
            timed_out=self._timed_out and self._failed is None and self._down is None,
        )
        actions: list[Action] = []
        if self._awaiting:
            actions.append(Finalize(frozenset(self._awaiting), outcome.final_clock))
            self.deadline = now + self._timeouts.ack
        else:
            self._end()
        actions.append(answer)
        return actions

    def _end(self) -> None:
        self.state = State.DONE
        self.deadline = None
        self._awaiting.clear()

    def _outcome(self) -> Outcome:
        approved = (
            self._failed is None and len(self._succeeded) == len(EVENTS) and not self._cancelled
        )
        return Outcome(
            order_id=self.order_id,
            approved=approved,
            reason="" if approved or self._failed is None else self._failed.reason,
            suggestions=list(self._suggestions) if approved else [],
            events=list(self._events),
            cancel_clocks=dict(self._cancel_clocks),
            payment_token=self._payment_token if approved else "",
        )
