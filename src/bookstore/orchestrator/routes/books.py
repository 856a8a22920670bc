"""GET /api/books: the catalogue (?q= searches; ?title= ?author= ?genre= narrow), with
each book's live stock from the books database (`stockKnown: false` when it cannot say)."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.responses import Response

from bookstore.catalogue import Catalogue
from bookstore.orchestrator.errors import json_response
from bookstore.orchestrator.responses import book_json
from bookstore.orchestrator.stock import DatabaseStock


class BookRoutes:
    def __init__(self, catalogue: Catalogue, stock: DatabaseStock) -> None:
        self.catalogue = catalogue
        self.stock = stock

    async def books(
        self, q: str = "", title: str = "", author: str = "", genre: str = ""
    ) -> Response:
        found = self.catalogue.search(q) if q else self.catalogue.all()
        for field, value in (("title", title), ("author", author), ("genre", genre)):
            if value:
                keep = {b.book_id for b in self.catalogue.search(value, field)}
                found = [b for b in found if b.book_id in keep]
        available = await self.stock.available() if found else {}
        return json_response([book_json(b, available) for b in found])


def install(app: FastAPI, routes: BookRoutes) -> None:
    app.add_api_route("/api/books", routes.books, methods=["GET"], summary="The catalogue")
