"""The web pages' routes, installed into the orchestrator's FastAPI app.

    GET /                    the shop (static/index.html)
    GET /cluster             the cluster view (static/cluster.html)
    GET /static/...          the pages' scripts and styles, all served from here
    GET /orders/{id}/trace   the order as a ShiViz log (see bookstore.web.trace)

The pages read the orchestrator's JSON API (/api/books, /checkout, /orders/{id},
/api/orders, /api/cluster); nothing is fetched from anywhere else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles

from bookstore.web.trace import shiviz_log

STATIC = Path(__file__).resolve().parent / "static"

GetOrder = Callable[[str], Awaitable[dict[str, Any] | None]]

# Pages change with the code; the browser must not keep an old copy.
_NO_CACHE = {"Cache-Control": "no-cache"}
# The pages load and talk to nothing but this origin.
CSP = (
    "default-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_PAGE_HEADERS = {**_NO_CACHE, "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"}


def install(app: FastAPI, get_order: GetOrder) -> None:
    """Add the shop, the cluster view, their assets and the trace export to `app`."""

    async def shop() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=_PAGE_HEADERS)

    async def cluster() -> FileResponse:
        return FileResponse(STATIC / "cluster.html", headers=_PAGE_HEADERS)

    async def trace(order_id: str) -> Response:
        order = await get_order(order_id)
        if order is None:
            return JSONResponse(
                {"error": {"code": "ORDER_NOT_FOUND", "message": f"no order {order_id}"}},
                status_code=404,
            )
        return PlainTextResponse(
            shiviz_log(order),
            headers={
                "Content-Disposition": f'inline; filename="order-{order_id[:36]}.shiviz.log"',
                **_NO_CACHE,
            },
        )

    app.add_api_route("/", shop, methods=["GET"], include_in_schema=False)
    app.add_api_route("/cluster", cluster, methods=["GET"], include_in_schema=False)
    app.add_api_route(
        "/orders/{order_id}/trace",
        trace,
        methods=["GET"],
        summary="The order's events as a ShiViz log (text/plain)",
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
