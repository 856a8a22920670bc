"""The checkout events, their owners and their dependencies (the partial order).

a ∥ b,  a → c,  b → d,  c ∧ d → e,  e → f
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bookstore.ai.budget import AiBudget
from bookstore.pb import checkout_pb2, common_pb2
from bookstore.settings import CHECKOUT_SERVICES

# The owners of the events: the checkout services, in vector-clock order.
TV, FD, SUG = CHECKOUT_SERVICES


@dataclass(frozen=True)
class EventSpec:
    event: str
    name: str
    service: str
    deps: tuple[str, ...]


EVENTS: dict[str, EventSpec] = {
    spec.event: spec
    for spec in (
        EventSpec("a", "items", TV, ()),
        EventSpec("b", "user-data", TV, ()),
        EventSpec("c", "card", TV, ("a",)),
        EventSpec("d", "user-fraud", FD, ("b",)),
        EventSpec("e", "card-fraud", FD, ("c", "d")),
        EventSpec("f", "suggestions", SUG, ("e",)),
    )
}
EVENT_NAMES = {e: spec.name for e, spec in EVENTS.items()}


def events_of(service: str) -> list[EventSpec]:
    return [spec for spec in EVENTS.values() if spec.service == service]


@dataclass(frozen=True)
class EventResult:
    ok: bool
    reason: str = ""  # customer-readable, when not ok
    answered_by: str = "rules"
    suggestions: list[common_pb2.Book] = field(default_factory=list)
    payment_token: str = ""  # event c: the payment service's token for the card


# A service's code for one event: the order as that service received it, and
# the order's AI budget (shared by all of the order's events in this process).
Handler = Callable[[checkout_pb2.OrderData, AiBudget], Awaitable[EventResult]]
