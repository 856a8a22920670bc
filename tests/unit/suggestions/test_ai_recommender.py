"""The AI recommender through the real SDK against the fake Gemini server."""

from __future__ import annotations

import json
import re

import pytest
from ai_support import (
    BUDGET_S,
    CALL_S,
    HANG_BUDGET_S,
    DeadlineRecorder,
    ai_settings,
    make_order,
)
from fakes.gemini import FakeGemini, Reply, closed_port_url

from bookstore.ai.breaker import CircuitBreaker
from bookstore.ai.budget import AiBudget
from bookstore.ai.client import GeminiModel
from bookstore.catalogue import Book, load_catalogue
from bookstore.suggestions.ai_recommender import AiRecommender
from bookstore.suggestions.recommender import CatalogueRecommender

ORDER = make_order(items=(("b001", 1), ("b002", 2)))


@pytest.fixture
def local() -> CatalogueRecommender:
    return CatalogueRecommender()


@pytest.fixture
def recommender(
    model: GeminiModel, breaker: CircuitBreaker, local: CatalogueRecommender
) -> AiRecommender:
    return AiRecommender(local, model, breaker, call_timeout_s=CALL_S)


def _ids(books: list[Book]) -> list[str]:
    return [b.book_id for b in books]


async def test_valid_ids_give_exactly_those_books_from_our_catalogue(
    fake: FakeGemini, recommender: AiRecommender
) -> None:
    fake.always(Reply.json({"book_ids": ["b010", "b007", "b020"]}))
    found = await recommender.suggest(ORDER, 3, AiBudget(BUDGET_S))
    assert found.answered_by == "ai"
    assert _ids(found.books) == ["b010", "b007", "b020"]
    catalogue = load_catalogue()
    for book in found.books:
        assert book == catalogue.by_id(book.book_id)  # titles and authors are ours


async def test_unknown_ordered_and_repeated_ids_are_dropped_and_filled_up(
    fake: FakeGemini, recommender: AiRecommender, local: CatalogueRecommender
) -> None:
    answer = ["b999", "b001", "b007", "b007", "Dune", "b002", "b102"]  # b102: a course sample
    fake.always(Reply.json({"book_ids": answer}))
    found = await recommender.suggest(ORDER, 3, AiBudget(BUDGET_S))
    assert found.answered_by == "ai+catalogue"
    ids = _ids(found.books)
    assert ids[0] == "b007"
    assert len(ids) == 3 == len(set(ids))
    assert not {"b001", "b002", "b999", "b102"} & set(ids)
    assert ids[1:] == [b for b in _ids(local.pick(ORDER, 4)) if b != "b007"][:2]


async def test_only_unknown_ids_fall_back_to_the_catalogue(
    fake: FakeGemini, recommender: AiRecommender, local: CatalogueRecommender
) -> None:
    fake.always(Reply.json({"book_ids": ["x1", "b001"]}))
    found = await recommender.suggest(ORDER, 3, AiBudget(BUDGET_S))
    assert found.answered_by == "fallback: unknown ids"
    assert found.books == local.pick(ORDER, 3)


async def test_the_ai_gets_a_shortlist_of_our_books_without_the_ordered_ones(
    fake: FakeGemini, recommender: AiRecommender
) -> None:
    fake.always(Reply.json({"book_ids": ["b010"]}))
    await recommender.suggest(ORDER, 3, AiBudget(BUDGET_S))
    [request] = fake.requests
    assert request.schema_keys() == {"book_ids"}
    prompt = request.text()
    document = re.search(r"<<<DATA (\w+)\n(.*)\nDATA \1>>>", prompt, re.DOTALL)
    assert document is not None
    data = json.loads(document.group(2))
    candidate_ids = [c["id"] for c in data["candidates"]]
    assert 3 <= len(candidate_ids) <= 20
    assert "b001" not in candidate_ids and "b002" not in candidate_ids
    catalogue = load_catalogue()
    assert all(catalogue.by_id(i) is not None for i in candidate_ids)
    assert {b["title"] for b in data["ordered"]} == {
        "Designing Data-Intensive Applications",
        "Distributed Systems",
    }


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        (Reply.text("You might enjoy Dune."), "not json"),
        (Reply.text('```json\n{"book_ids": ["b010"]}\n```'), "not json"),
        (Reply.json({"books": [{"title": "Dune"}]}), "schema mismatch"),
        (Reply.status(500), "http 500"),
        (Reply.status(429), "http 429"),
        (Reply.close(), "connection"),
        (Reply.hang(), "timeout"),
    ],
)
async def test_any_failure_falls_back_to_the_catalogue_within_the_budget(
    fake: FakeGemini,
    model: GeminiModel,
    breaker: CircuitBreaker,
    local: CatalogueRecommender,
    reply: Reply,
    why: str,
) -> None:
    fake.always(reply)
    total_s = HANG_BUDGET_S if reply.kind == "hang" else BUDGET_S
    recorder = DeadlineRecorder(model)
    recommender = AiRecommender(local, recorder, breaker, call_timeout_s=CALL_S)
    found = await recommender.suggest(ORDER, 3, AiBudget(total_s))
    assert recorder.deadlines and all(d <= total_s for d in recorder.deadlines)
    assert found.answered_by == f"fallback: {why}"
    assert found.books == local.pick(ORDER, 3)


async def test_connection_refused_falls_back(
    breaker: CircuitBreaker, local: CatalogueRecommender
) -> None:
    model = GeminiModel(ai_settings(closed_port_url()))
    try:
        found = await AiRecommender(local, model, breaker).suggest(ORDER, 3, AiBudget(BUDGET_S))
    finally:
        await model.aclose()
    assert found.answered_by == "fallback: connection"
    assert len(found.books) == 3


async def test_a_spent_budget_goes_straight_to_the_catalogue(
    fake: FakeGemini, recommender: AiRecommender
) -> None:
    fake.always(Reply.json({"book_ids": ["b010"]}))
    found = await recommender.suggest(ORDER, 3, AiBudget(BUDGET_S, spent_s=BUDGET_S))
    assert found.answered_by == "fallback: budget spent"
    assert fake.requests == []


async def test_the_count_is_respected(fake: FakeGemini, recommender: AiRecommender) -> None:
    fake.always(Reply.json({"book_ids": ["b010", "b007", "b020", "b021", "b022"]}))
    found = await recommender.suggest(ORDER, 2, AiBudget(BUDGET_S))
    assert _ids(found.books) == ["b010", "b007"]
    assert found.answered_by == "ai"
