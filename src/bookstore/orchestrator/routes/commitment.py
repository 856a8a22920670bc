"""GET /orders/{id}/commitment: the order's two-phase commit (prepare, vote, decision,
logged, ack messages between its coordinator, the decision log and the participants),
for the cluster view's commitment diagram. An order no executor coordinated (or whose
coordinators do not answer) has no steps."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.responses import Response

from bookstore.books_database.stock import MAX_ID
from bookstore.orchestrator.commitment import CommitmentSource
from bookstore.orchestrator.errors import error_response, json_response
from bookstore.orchestrator.responses import commitment_json


class CommitmentRoute:
    def __init__(self, source: CommitmentSource) -> None:
        self.source = source

    async def commitment(self, order_id: str) -> Response:
        if len(order_id) > MAX_ID:
            return error_response(
                400, "BAD_ORDER_ID", f"An order id has at most {MAX_ID} characters."
            )
        return json_response(commitment_json(order_id, await self.source.steps(order_id)))


def install(app: FastAPI, route: CommitmentRoute) -> None:
    app.add_api_route(
        "/orders/{order_id}/commitment",
        route.commitment,
        methods=["GET"],
        summary="An order's two-phase commit messages",
    )
