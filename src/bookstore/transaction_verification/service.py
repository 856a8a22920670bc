"""The transaction-verification service: events a (items), b (user data), c (card)."""

from __future__ import annotations

from bookstore.ai.budget import AiBudget
from bookstore.catalogue import Catalogue, load_catalogue
from bookstore.choreography import server as choreography_server
from bookstore.choreography.engine import Participant
from bookstore.choreography.events import TV, EventResult, Handler
from bookstore.pb import checkout_pb2
from bookstore.settings import Settings
from bookstore.transaction_verification import checks

NAME = TV


def _result(reason: str) -> EventResult:
    return EventResult(ok=not reason, reason=reason, answered_by="rules")


def handlers(catalogue: Catalogue) -> dict[str, Handler]:
    async def items(order: checkout_pb2.OrderData, budget: AiBudget) -> EventResult:
        return _result(checks.check_items(order, catalogue))

    async def user_data(order: checkout_pb2.OrderData, budget: AiBudget) -> EventResult:
        return _result(checks.check_user_data(order))

    async def card(order: checkout_pb2.OrderData, budget: AiBudget) -> EventResult:
        return _result(checks.check_card(order.card))

    return {"a": items, "b": user_data, "c": card}


def create_participant(settings: Settings, catalogue: Catalogue | None = None) -> Participant:
    return choreography_server.participant(
        settings, NAME, handlers(catalogue if catalogue is not None else load_catalogue())
    )


async def serve(settings: Settings, replica_id: int | None = None) -> None:
    await choreography_server.serve(settings, create_participant(settings))
