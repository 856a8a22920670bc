"""The AI recommender (event f): Gemini picks from a shortlist of our books.

- The shortlist: the catalogue recommender's picks, then the rest of the
  catalogue, never a book in the order, at most SHORTLIST books; the AI sees
  their ids, titles, authors and genres, and the ordered books.
- Of the ids it answers, only those in the catalogue (not a course sample
  title) and not in the order are kept, once each, in its order, at most
  `count`.
- Fewer than `count` kept: filled up from the catalogue recommender
  ("ai+catalogue"). None kept, or any failure: the catalogue recommender
  answers alone ("fallback: <why>").
"""

from __future__ import annotations

import logging

from pydantic import BaseModel, Field

from bookstore.ai.breaker import CircuitBreaker
from bookstore.ai.budget import AiBudget
from bookstore.ai.calls import ask
from bookstore.ai.client import AiModel, AiRequest
from bookstore.ai.errors import AiError, AiUnknownIds
from bookstore.ai.prompts import DATA_RULE, wrap_data
from bookstore.catalogue import Book
from bookstore.pb import checkout_pb2
from bookstore.suggestions.recommender import SAMPLE_GENRE, CatalogueRecommender, Suggestions
from bookstore.telemetry import metrics

log = logging.getLogger(__name__)

SHORTLIST = 20


class SuggestionAnswer(BaseModel):
    """The AI's picks, best first, by catalogue id."""

    book_ids: list[str] = Field(description="ids taken from the candidate list, best first")


SUGGESTIONS_SYSTEM = (
    "You recommend books in an online bookstore. Given the books a customer just ordered "
    "and a list of candidate books, pick the candidates this customer is most likely to "
    "enjoy. Use only ids from the candidate list. "
    + DATA_RULE
    + " Answer only with JSON: book_ids (candidate ids, best first)."
)


def suggestions_request(
    ordered: list[Book], candidates: list[Book], count: int
) -> AiRequest[SuggestionAnswer]:
    data = {
        "ordered": [{"title": b.title, "author": b.author, "genre": b.genre} for b in ordered],
        "candidates": [
            {"id": b.book_id, "title": b.title, "author": b.author, "genre": b.genre}
            for b in candidates
        ],
        "how_many": count,
    }
    prompt = wrap_data(f"Pick up to {count} candidates for this customer.", data)
    return AiRequest("suggestions", SUGGESTIONS_SYSTEM, prompt, SuggestionAnswer)


class AiRecommender:
    """A Recommender: Gemini's picks among our books, the catalogue as fallback."""

    def __init__(
        self,
        catalogue_recommender: CatalogueRecommender,
        ai: AiModel,
        breaker: CircuitBreaker,
        *,
        call_timeout_s: float = 2.0,
        shortlist: int = SHORTLIST,
    ) -> None:
        self.local = catalogue_recommender
        self.catalogue = catalogue_recommender.catalogue
        self.ai = ai
        self.breaker = breaker
        self.call_timeout_s = call_timeout_s
        self.shortlist = shortlist

    def candidates(self, order: checkout_pb2.OrderData, count: int) -> list[Book]:
        """The shortlist the AI chooses from (never a book in the order)."""
        size = max(self.shortlist, count)
        picked = self.local.pick(order, size)
        seen = {b.book_id for b in picked} | {b.book_id for b in self.local.ordered_books(order)}
        for book in self.catalogue.all():
            if len(picked) >= size:
                break
            if book.book_id not in seen and book.genre != SAMPLE_GENRE:
                seen.add(book.book_id)
                picked.append(book)
        return picked

    def keep(self, order: checkout_pb2.OrderData, ids: list[str], count: int) -> list[Book]:
        """The AI's ids that name a catalogue book not in the order, once each."""
        ordered = {b.book_id for b in self.local.ordered_books(order)}
        kept: list[Book] = []
        for book_id in ids:
            book = self.catalogue.by_id(book_id)
            if book is None or book in kept:
                continue
            if book.book_id in ordered or book.genre == SAMPLE_GENRE:
                continue
            kept.append(book)
            if len(kept) == count:
                break
        return kept

    async def suggest(
        self, order: checkout_pb2.OrderData, count: int, budget: AiBudget
    ) -> Suggestions:
        order_id = order.order_id.value
        if count <= 0:
            return Suggestions(books=[], answered_by="catalogue")
        ordered = self.local.ordered_books(order)
        request = suggestions_request(ordered, self.candidates(order, count), count)
        try:
            answer = await ask(self.ai, self.breaker, budget, request, self.call_timeout_s)
            kept = self.keep(order, answer.book_ids, count)
            if not kept:
                raise AiUnknownIds(f"{len(answer.book_ids)} ids, none usable")
        except AiError as exc:
            metrics.count_ai("suggestions", exc.kind)
            log.info("order=%s suggestions answered by the catalogue: %s", order_id, exc)
            return Suggestions(self.local.pick(order, count), answered_by=f"fallback: {exc.kind}")
        metrics.count_ai("suggestions", None)
        if len(kept) == count:
            return Suggestions(kept, answered_by="ai")
        taken = {b.book_id for b in kept}
        fill = [b for b in self.local.pick(order, count + len(kept)) if b.book_id not in taken]
        return Suggestions([*kept, *fill][:count], answered_by="ai+catalogue")
