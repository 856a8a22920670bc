"""A scripted stand-in for the orchestrator's JSON API, serving the real pages.

Lets the page tests check what the pages do with each documented answer
(approved, rejected, errors, a cancelled order's diagram) without the whole
system; the system tests in this folder run the real one.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from commitment_steps import COMMITTED
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from bookstore.web.routes import install

TV, FD, SUG = "transaction-verification", "fraud-detection", "suggestions"

BOOKS = [
    {
        "bookId": "b1",
        "title": "The Pragmatic Programmer",
        "author": "Hunt & Thomas",
        "genre": "Programming",
        "price": 39.9,
        "stock": 12,
    },
    {
        "bookId": "b2",
        "title": "Designing Data-Intensive Applications",
        "author": "Martin Kleppmann",
        "genre": "Distributed Systems",
        "price": 45.0,
        "stock": 5,
    },
    {
        "bookId": "b3",
        "title": "Dune",
        "author": "Frank Herbert",
        "genre": "Science Fiction",
        "price": 12.5,
        "stock": 0,
    },
    {
        "bookId": "b4",
        "title": "Distributed Systems",
        "author": "Maarten van Steen",
        "genre": "Distributed Systems",
        "price": 30.0,
        "stock": 3,
    },
]


def _event(
    letter: str,
    name: str,
    service: str,
    clock: list[int],
    at: float,
    ok: bool = True,
    reason: str = "",
) -> dict[str, Any]:
    return {
        "event": letter,
        "name": name,
        "service": service,
        "clock": clock,
        "ok": ok,
        "reason": reason,
        "answeredBy": "rules",
        "at": at,
        "durationMs": 1.5,
    }


def approved_order(order_id: str, now: float) -> dict[str, Any]:
    return {
        "orderId": order_id,
        "status": "Order Approved",
        "reason": None,
        "createdAt": now,
        "items": [{"bookId": "b1", "title": BOOKS[0]["title"], "quantity": 1}],
        "suggestedBooks": [
            {"bookId": "b4", "title": "Distributed Systems", "author": "Maarten van Steen"}
        ],
        "vectorClock": [3, 2, 1],
        "events": [
            _event("b", "user-data", TV, [2, 0, 0], now + 0.001),
            _event("a", "items", TV, [1, 0, 0], now + 0.002),
            _event("d", "user-fraud", FD, [2, 1, 0], now + 0.003),
            _event("c", "card", TV, [3, 1, 0], now + 0.004),
            _event("e", "card-fraud", FD, [3, 2, 0], now + 0.005),
            _event("f", "suggestions", SUG, [3, 2, 1], now + 0.006),
        ],
        "cancel": None,
        "clockErrors": [],
        "execution": {
            "state": "queued",
            "executor": None,
            "epoch": 2,
            "sequence": 7,
            "executedAt": None,
        },
    }


def rejected_order(order_id: str, now: float) -> dict[str, Any]:
    reason = "The card number is not valid."
    return {
        "orderId": order_id,
        "status": "Order Rejected",
        "reason": reason,
        "createdAt": now,
        "items": [],
        "suggestedBooks": [],
        "vectorClock": [3, 1, 0],
        "events": [
            _event("a", "items", TV, [1, 0, 0], now),
            _event("b", "user-data", TV, [2, 0, 0], now + 0.001),
            _event("c", "card", TV, [3, 0, 0], now + 0.002, ok=False, reason=reason),
            _event("d", "user-fraud", FD, [2, 1, 0], now + 0.003),
        ],
        "cancel": {"clocks": {TV: [3, 1, 0], FD: [3, 1, 0], SUG: [3, 1, 0]}},
        "clockErrors": [],
        "execution": None,
    }


def commitment_steps() -> list[dict[str, Any]]:
    """An executed order's commitment, in GET /orders/{id}/commitment's shape."""
    return [
        {
            "at": f"2026-01-01T00:00:00.{n:03d}Z",
            "coordinator": 3,
            "kind": kind,
            "from": sender,
            "to": receiver,
            "detail": detail,
            "epoch": 2,
        }
        for n, (kind, sender, receiver, detail) in enumerate(COMMITTED)
    ]


def create_app() -> FastAPI:
    app = FastAPI()
    orders: dict[str, dict[str, Any]] = {}
    polls: dict[str, int] = {}

    async def get_order(order_id: str) -> dict[str, Any] | None:
        order = orders.get(order_id)
        if order and order["execution"] is not None:
            polls[order_id] = polls.get(order_id, 0) + 1
            if polls[order_id] >= 2:
                order["execution"] = {
                    "state": "executed",
                    "executor": 3,
                    "epoch": 2,
                    "sequence": 7,
                    "executedAt": "2026-01-01T00:00:00Z",
                }
        return order

    @app.get("/api/books")
    async def books(q: str = "") -> list[dict[str, Any]]:
        needle = q.lower()
        return [
            b
            for b in BOOKS
            if any(needle in str(b[k]).lower() for k in ("title", "author", "genre"))
        ]

    @app.post("/checkout")
    async def checkout(request: Request) -> JSONResponse:
        body = await request.json()
        if body.get("user", {}).get("name") == "Error":
            return JSONResponse(
                {"error": {"code": "UNAVAILABLE", "message": "A checkout service is down."}}, 503
            )
        order_id = str(uuid.uuid4())
        rejected = body.get("user", {}).get("name") == "Reject Me"
        make = rejected_order if rejected else approved_order
        order = make(order_id, time.time())
        orders[order_id] = order
        return JSONResponse(
            {
                k: order[k]
                for k in (
                    "orderId",
                    "status",
                    "suggestedBooks",
                    "reason",
                    "vectorClock",
                    "execution",
                )
            }
        )

    @app.get("/orders/{order_id}")
    async def order(order_id: str) -> JSONResponse:
        found = await get_order(order_id)
        if found is None:
            return JSONResponse(
                {"error": {"code": "ORDER_NOT_FOUND", "message": "no such order"}}, 404
            )
        return JSONResponse(found)

    @app.get("/orders/{order_id}/replication")
    async def replication(order_id: str) -> dict[str, Any]:
        return {"orderId": order_id, "answered": [1, 2, 3], "steps": []}

    @app.get("/orders/{order_id}/commitment")
    async def commitment(order_id: str) -> dict[str, Any]:
        return {"orderId": order_id, "steps": commitment_steps() if order_id in orders else []}

    @app.get("/api/orders")
    async def recent(limit: int = 20) -> dict[str, Any]:
        rows = [
            {
                "orderId": o["orderId"],
                "status": o["status"],
                "reason": o["reason"],
                "createdAt": o["createdAt"],
                "books": 1,
                "execution": o["execution"],
            }
            for o in reversed(orders.values())
        ]
        return {"orders": rows[:limit]}

    @app.get("/api/cluster")
    async def cluster() -> dict[str, Any]:
        services = [
            {
                "name": n,
                "replicaId": None,
                "address": f"127.0.0.1:5005{i}",
                "pid": 1000 + i,
                "healthy": True,
                "cachedOrders": 0,
            }
            for i, n in enumerate((FD, TV, SUG, "order-queue"), start=1)
        ]
        executors = [
            {
                "replicaId": i,
                "address": f"127.0.0.1:5005{4 + i}",
                "pid": 2000 + i,
                "alive": i != 4,
                "role": "leader" if i == 3 else "follower",
                "leaderId": 3,
                "epoch": 2,
                "executed": 5 * i,
            }
            for i in (1, 2, 3, 4)
        ]
        return {
            "services": services,
            "executors": executors,
            "leader": {"replicaId": 3, "epoch": 2},
            "queue": {
                "depth": 2,
                "next": [
                    {"orderId": str(uuid.UUID(int=7)), "books": 5, "sequence": 9},
                    {"orderId": str(uuid.UUID(int=8)), "books": 1, "sequence": 8},
                ],
                "epoch": 2,
                "leaderId": 3,
                "leased": 0,
                "executed": 30,
                "pid": 1005,
                "healthy": True,
            },
            "elections": [
                {
                    "at": time.time() - 5,
                    "replicaId": 2,
                    "step": "called",
                    "detail": "leader 4 silent; ELECTION to [3, 4]",
                    "epoch": 1,
                },
                {
                    "at": time.time() - 4.9,
                    "replicaId": 3,
                    "step": "answered",
                    "detail": "ELECTION from 2",
                    "epoch": 1,
                },
                {
                    "at": time.time() - 4.6,
                    "replicaId": 3,
                    "step": "won",
                    "detail": "no ANSWER from higher ids",
                    "epoch": 1,
                },
                {
                    "at": time.time() - 4.5,
                    "replicaId": 3,
                    "step": "registered",
                    "detail": "queue granted epoch 2",
                    "epoch": 2,
                },
            ],
        }

    install(app, get_order)
    return app
