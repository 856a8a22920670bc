"""Book suggestions from the catalogue, and the recommender interface.

CatalogueRecommender, deterministic:
1. other books by the authors of the ordered books,
2. then other books of the ordered books' genres,
3. then the most popular books (POPULAR, a fixed list, then by stock),
never a book already in the order and never a course sample title. When the
catalogue knows none of the ordered books, step 3 alone fills the list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bookstore.ai.budget import AiBudget
from bookstore.catalogue import Book, Catalogue, load_catalogue
from bookstore.pb import checkout_pb2

# Fixed popularity order (catalogue ids), the last resort.
POPULAR = ("b001", "b021", "b035", "b046", "b062", "b081", "b091", "b076", "b023", "b036")
SAMPLE_GENRE = "sample"


@dataclass(frozen=True)
class Suggestions:
    books: list[Book]
    answered_by: str


class Recommender(Protocol):
    async def suggest(
        self, order: checkout_pb2.OrderData, count: int, budget: AiBudget
    ) -> Suggestions: ...


class CatalogueRecommender:
    def __init__(self, catalogue: Catalogue | None = None) -> None:
        self.catalogue = catalogue or load_catalogue()
        books = [b for b in self.catalogue.all() if b.genre != SAMPLE_GENRE]
        by_id = {b.book_id: b for b in books}
        fixed = [by_id[i] for i in POPULAR if i in by_id]
        rest = sorted(
            (b for b in books if b.book_id not in POPULAR), key=lambda b: (-b.stock, b.book_id)
        )
        self._popular = fixed + rest

    def ordered_books(self, order: checkout_pb2.OrderData) -> list[Book]:
        found = (self.catalogue.resolve(i.book_id, i.title) for i in order.items)
        return [b for b in found if b is not None]

    def pick(self, order: checkout_pb2.OrderData, count: int) -> list[Book]:
        ordered = self.ordered_books(order)
        exclude = {b.book_id for b in ordered}
        excluded_titles = {i.title.strip().casefold() for i in order.items if i.title.strip()}
        authors = {b.author for b in ordered if b.genre != SAMPLE_GENRE}
        genres = {b.genre for b in ordered if b.genre != SAMPLE_GENRE}
        candidates = [
            *(b for b in self.catalogue.all() if b.author in authors),
            *(b for b in self.catalogue.all() if b.genre in genres),
            *self._popular,
        ]
        picked: list[Book] = []
        for book in candidates:
            if len(picked) >= count:
                break
            if (
                book.book_id in exclude
                or book.title.casefold() in excluded_titles
                or book.genre == SAMPLE_GENRE
            ):
                continue
            exclude.add(book.book_id)
            picked.append(book)
        return picked

    async def suggest(
        self, order: checkout_pb2.OrderData, count: int, budget: AiBudget
    ) -> Suggestions:
        return Suggestions(books=self.pick(order, count), answered_by="catalogue")
