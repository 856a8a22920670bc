"""GET /orders/{id}/replication: what each books-database replica did with the order's
reserve, commit or release (appended, stored, acked, applied, at which log position),
for the cluster view's replication diagram. Replicas that do not answer are left out
("answered" names those that did); an order the replicas never saw has no steps."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.responses import Response

from bookstore.books_database.stock import MAX_ID
from bookstore.orchestrator.errors import error_response, json_response
from bookstore.orchestrator.responses import replication_json
from bookstore.orchestrator.stock import StockSource


class ReplicationRoute:
    def __init__(self, stock: StockSource) -> None:
        self.stock = stock

    async def replication(self, order_id: str) -> Response:
        if len(order_id) > MAX_ID:
            return error_response(
                400, "BAD_ORDER_ID", f"An order id has at most {MAX_ID} characters."
            )
        return json_response(replication_json(order_id, await self.stock.replication(order_id)))


def install(app: FastAPI, route: ReplicationRoute) -> None:
    app.add_api_route(
        "/orders/{order_id}/replication",
        route.replication,
        methods=["GET"],
        summary="An order's replication steps in the books database",
    )
