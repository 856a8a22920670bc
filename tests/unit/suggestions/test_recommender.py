from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bookstore.ai.budget import AiBudget
from bookstore.catalogue import load_catalogue
from bookstore.pb import checkout_pb2, common_pb2
from bookstore.suggestions.recommender import CatalogueRecommender

CATALOGUE = load_catalogue()
RECOMMENDER = CatalogueRecommender(CATALOGUE)
TITLES = [b.title for b in CATALOGUE.all()]


def order(*titles: str) -> checkout_pb2.OrderData:
    return checkout_pb2.OrderData(items=[common_pb2.OrderItem(title=t, quantity=1) for t in titles])


def test_same_author_first_then_same_genre() -> None:
    picked = RECOMMENDER.pick(order("The Hobbit"), 3)
    assert picked[0].title == "The Lord of the Rings"
    assert all(b.genre == "fantasy" for b in picked)


def test_course_sample_order_gets_popular_real_books() -> None:
    picked = RECOMMENDER.pick(order("Book A", "Book B"), 3)
    assert len(picked) == 3
    assert all(b.genre != "sample" for b in picked)


def test_unknown_books_still_get_suggestions() -> None:
    assert len(RECOMMENDER.pick(order("No Such Book"), 3)) == 3


def test_deterministic() -> None:
    assert RECOMMENDER.pick(order("Dune", "Emma"), 5) == RECOMMENDER.pick(order("Dune", "Emma"), 5)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(TITLES), max_size=30), st.integers(min_value=0, max_value=10))
def test_never_suggests_an_ordered_book(titles: list[str], count: int) -> None:
    picked = RECOMMENDER.pick(order(*titles), count)
    assert len(picked) == count
    assert not {b.title for b in picked} & set(titles)
    assert len({b.book_id for b in picked}) == len(picked)


def test_ordered_by_id_is_excluded_too() -> None:
    dune = CATALOGUE.by_title("Dune")
    assert dune is not None
    data = checkout_pb2.OrderData(items=[common_pb2.OrderItem(book_id=dune.book_id, quantity=1)])
    assert dune not in RECOMMENDER.pick(data, 10)


async def test_suggest_answers_from_the_catalogue() -> None:
    found = await RECOMMENDER.suggest(order("Dune"), 3, AiBudget(3.0))
    assert found.answered_by == "catalogue"
    assert len(found.books) == 3
