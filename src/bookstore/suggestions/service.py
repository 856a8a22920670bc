"""The suggestions service: event f (books to suggest with an approved order)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bookstore.ai import factory as ai_factory
from bookstore.ai.breaker import CircuitBreaker
from bookstore.ai.budget import AiBudget
from bookstore.choreography import server as choreography_server
from bookstore.choreography.engine import Participant
from bookstore.choreography.events import SUG, EventResult, Handler
from bookstore.pb import checkout_pb2, common_pb2
from bookstore.settings import Settings
from bookstore.suggestions.recommender import CatalogueRecommender, Recommender

if TYPE_CHECKING:
    from bookstore.ai.client import AiModel

NAME = SUG


def make_recommender(settings: Settings) -> Recommender:
    """The recommender this service asks: the AI one with a Gemini key, else the catalogue."""
    local = CatalogueRecommender()

    def ai_recommender(model: AiModel, breaker: CircuitBreaker) -> Recommender:
        from bookstore.suggestions.ai_recommender import AiRecommender

        return AiRecommender(local, model, breaker, call_timeout_s=settings.ai_call_timeout_s)

    return ai_factory.choose(settings, local, "catalogue suggestions", ai_recommender)


def handlers(recommender: Recommender, count: int) -> dict[str, Handler]:
    async def suggestions(order: checkout_pb2.OrderData, budget: AiBudget) -> EventResult:
        found = await recommender.suggest(order, count, budget)
        return EventResult(
            ok=True,
            answered_by=found.answered_by,
            suggestions=[
                common_pb2.Book(book_id=b.book_id, title=b.title, author=b.author)
                for b in found.books
            ],
        )

    return {"f": suggestions}


def create_participant(settings: Settings, recommender: Recommender | None = None) -> Participant:
    chosen = recommender if recommender is not None else make_recommender(settings)
    return choreography_server.participant(
        settings, NAME, handlers(chosen, settings.suggestions_count)
    )


async def serve(settings: Settings, replica_id: int | None = None) -> None:
    await choreography_server.serve(settings, create_participant(settings))
