from __future__ import annotations

import pytest

from bookstore.catalogue import load_catalogue, parse


def test_catalogue_has_about_a_hundred_real_books_and_the_course_samples() -> None:
    catalogue = load_catalogue()
    real = [b for b in catalogue.all() if b.genre != "sample"]
    assert len(real) >= 95
    assert len({b.book_id for b in catalogue.all()}) == len(catalogue)
    assert len({b.genre for b in real}) >= 6
    assert all(b.price > 0 and b.stock >= 0 for b in catalogue.all())
    a, b = catalogue.by_title("Book A"), catalogue.by_title("Book B")
    assert a is not None and b is not None
    assert a.author == b.author == "Course Sample"


def test_title_lookup_ignores_case_and_spaces() -> None:
    catalogue = load_catalogue()
    book = catalogue.by_title("  designing   DATA-intensive applications ")
    assert book is not None and book.author == "Martin Kleppmann"
    assert catalogue.by_title("Designing Data") is None


def test_resolve_prefers_the_id_then_the_title() -> None:
    catalogue = load_catalogue()
    dune = catalogue.by_title("Dune")
    assert dune is not None
    assert catalogue.resolve(dune.book_id, "Book A") == dune
    assert catalogue.resolve("b999", "Dune") == dune
    assert catalogue.resolve("", "") is None
    assert catalogue.resolve("b999", "No Such Book") is None


def test_search_by_field_and_anywhere() -> None:
    catalogue = load_catalogue()
    tolkien = catalogue.search("tolkien", "author")
    assert {b.title for b in tolkien} == {"The Lord of the Rings", "The Hobbit"}
    assert all(b.genre == "mystery" for b in catalogue.search("MYSTERY", "genre"))
    assert catalogue.search("tolkien", "title") == []
    assert len(catalogue.search("")) == len(catalogue)
    with pytest.raises(ValueError):
        catalogue.search("x", "price")


def test_every_price_in_cents_is_the_listed_euro_price() -> None:
    books = load_catalogue().all()
    assert all(b.price_cents > 0 and b.price_cents == round(b.price * 100) for b in books)
    book = parse(
        '{"books": [{"id": "x", "title": "T", "author": "A", "genre": "g",'
        ' "price": 0.29, "stock": 1}]}'
    ).all()[0]
    assert book.price_cents == 29  # 0.29 * 100 is 28.999999999999996 as a float
