"""The checkout pipeline: the orchestrator's side of the choreography.

INTERFACE (filled in by the checkout-services work): the HTTP layer calls
`Pipeline.run` and reads the `Outcome`; it never sees gRPC.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bookstore.grpcutil import ServiceUnavailable
from bookstore.orchestrator.models import CheckoutRequest
from bookstore.settings import Settings
from bookstore.vclock import Clock


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

    async def start(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def run(self, order_id: str, request: CheckoutRequest) -> Outcome:
        """Run one order to its end (approved or rejected, finalized).

        Raises ServiceUnavailable (or CheckoutTimeout) when a checkout service
        is down or too slow; the order is then cancelled in the others.
        """
        raise NotImplementedError

    async def stats(self) -> list[ServiceStats]:
        """Health, pid and cache size of each checkout service."""
        raise NotImplementedError
