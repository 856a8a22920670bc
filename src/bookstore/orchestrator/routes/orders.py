"""GET /orders/{id} and GET /api/orders: the stored orders, their execution refreshed."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI
from starlette.responses import Response

from bookstore.orchestrator.components import bounded
from bookstore.orchestrator.errors import error_response, json_response
from bookstore.orchestrator.execution import ExecutionInfo, ExecutionTracker
from bookstore.orchestrator.responses import order_json, order_line_json
from bookstore.orchestrator.store import (
    OrderRecord,
    OrderStore,
    apply_execution,
    awaiting_execution,
)

STATUS_TIMEOUT_S = 1.0  # refreshing one order's execution state
REFRESH_MAX = 50  # GET /api/orders refreshes at most this many unexecuted orders


class OrderRoutes:
    def __init__(self, tracker: ExecutionTracker, store: OrderStore) -> None:
        self.tracker = tracker
        self.store = store

    async def get_order(self, order_id: str) -> dict[str, Any] | None:
        """The GET /orders/{id} body, or None for an unknown order (the web pages use it)."""
        record = self.store.get(order_id)
        if record is None:
            return None
        if awaiting_execution(record):
            await self._refresh(record)
        return order_json(record)

    async def _refresh(self, record: OrderRecord) -> None:
        """Ask the queue how far an approved order got (bounded; keeps the old state on error)."""
        info = await bounded(self.tracker.status(record.order_id), STATUS_TIMEOUT_S)
        if isinstance(info, ExecutionInfo):
            apply_execution(record, info)

    async def order(self, order_id: str) -> Response:
        found = await self.get_order(order_id)
        if found is None:
            return error_response(404, "ORDER_NOT_FOUND", f"No order {order_id[:64]} is known.")
        return json_response(found)

    async def orders(self, limit: int = 20) -> Response:
        limit = max(1, min(limit, 1000))
        records = self.store.recent(limit)
        stale = [r for r in records if awaiting_execution(r)][:REFRESH_MAX]
        if stale:
            await asyncio.gather(*(self._refresh(r) for r in stale))
        return json_response({"orders": [order_line_json(r) for r in records]})


def install(app: FastAPI, routes: OrderRoutes) -> None:
    app.add_api_route("/api/orders", routes.orders, methods=["GET"], summary="Recent orders")
    app.add_api_route("/orders/{order_id}", routes.order, methods=["GET"], summary="One order")
