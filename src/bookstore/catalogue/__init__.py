"""The book catalogue, shipped as package data (`books.json`).

About a hundred real books plus the two sample titles the course page orders
by default ("Book A" and "Book B", author "Course Sample", genre "sample"), so
the course page's default order is approved. Titles are unique
(case-insensitively); ids look like "b001".
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from importlib import resources
from typing import Protocol

SEARCH_FIELDS = ("title", "author", "genre")


class Line(Protocol):
    """An order line: a catalogue id and/or a title, and a quantity."""

    @property
    def book_id(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def quantity(self) -> int: ...


@dataclass(frozen=True)
class Book:
    book_id: str
    title: str
    author: str
    genre: str
    price: float
    stock: int

    @property
    def price_cents(self) -> int:
        """The price in integer cents, which payments use (books.json lists euros
        with at most two decimals; rounded half up, never through a float product)."""
        return int((Decimal(str(self.price)) * 100).to_integral_value(ROUND_HALF_UP))


def _key(title: str) -> str:
    return " ".join(title.split()).casefold()


class Catalogue:
    """Look-ups by id and title, and search. Immutable once built."""

    def __init__(self, books: Iterable[Book]) -> None:
        self._books = tuple(books)
        self._by_id = {b.book_id: b for b in self._books}
        self._by_title = {_key(b.title): b for b in self._books}

    def __len__(self) -> int:
        return len(self._books)

    def all(self) -> list[Book]:
        return list(self._books)

    def by_id(self, book_id: str) -> Book | None:
        return self._by_id.get(book_id.strip())

    def by_title(self, title: str) -> Book | None:
        """Exact title match, ignoring case and surrounding/repeated spaces."""
        return self._by_title.get(_key(title))

    def resolve(self, book_id: str, title: str) -> Book | None:
        """The book an order line means: its id if given and known, else its title."""
        if book_id:
            book = self.by_id(book_id)
            if book is not None:
                return book
        if title:
            return self.by_title(title)
        return None

    def amount_cents(self, lines: Iterable[Line]) -> int:
        """What the lines cost: price_cents x quantity, summed (unknown books: 0)."""
        total = 0
        for line in lines:
            book = self.resolve(line.book_id, line.title)
            total += (book.price_cents if book else 0) * max(0, line.quantity)
        return total

    def search(self, q: str, field: str | None = None) -> list[Book]:
        """Books whose `field` (or any of title/author/genre) contains `q`, ignoring case."""
        if field is not None and field not in SEARCH_FIELDS:
            raise ValueError(f"cannot search by {field!r}; use one of {', '.join(SEARCH_FIELDS)}")
        needle = _key(q)
        if not needle:
            return self.all()
        fields = SEARCH_FIELDS if field is None else (field,)
        return [b for b in self._books if any(needle in _key(getattr(b, f)) for f in fields)]


def parse(raw: str) -> Catalogue:
    data = json.loads(raw)
    return Catalogue(
        Book(
            book_id=str(entry["id"]),
            title=str(entry["title"]),
            author=str(entry["author"]),
            genre=str(entry["genre"]),
            price=float(entry["price"]),
            stock=int(entry["stock"]),
        )
        for entry in data["books"]
    )


@cache
def load_catalogue() -> Catalogue:
    """The packaged catalogue, read once per process."""
    raw = resources.files(__package__).joinpath("books.json").read_text(encoding="utf-8")
    return parse(raw)
