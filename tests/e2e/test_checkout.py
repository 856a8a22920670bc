"""End to end: the checkout over HTTP through every real service process."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import httpx
import pytest
from checkout_requests import CARD, CVV, card_secrets_in, course_page_request, full_spec_request
from harness import System

from bookstore import vclock

pytestmark = pytest.mark.e2e

# (happened-before edges of the event graph: a -> c, b -> d, c -> e, d -> e, e -> f)
EDGES = (("a", "c"), ("b", "d"), ("c", "e"), ("d", "e"), ("e", "f"))
ORIGIN = "http://localhost:8080"


def post_like_the_course_page(client: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    """A JSON body without a Content-Type header (arrives as text/plain), from another origin."""
    request = client.build_request(
        "POST", "/checkout", content=json.dumps(body).encode(), headers={"Origin": ORIGIN}
    )
    assert "content-type" not in request.headers
    return client.send(request)


def assert_respects_partial_order(order: dict[str, Any]) -> None:
    clocks = {e["event"]: tuple(e["clock"]) for e in order["events"]}
    assert len(clocks) == len(order["events"]), f"an event reported twice: {order['events']}"
    for before, after in EDGES:
        if before in clocks and after in clocks:
            assert vclock.happened_before(clocks[before], clocks[after]), (
                f"order {order['orderId']}: {before}{list(clocks[before])} should happen "
                f"before {after}{list(clocks[after])}"
            )
    for event, clock in clocks.items():
        if order["vectorClock"] is not None:
            assert vclock.leq(clock, tuple(order["vectorClock"])), (event, order)


def test_course_page_default_request_is_approved_with_suggestions(
    client: httpx.Client,
) -> None:
    response = post_like_the_course_page(client, course_page_request())
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == "*"
    body = response.json()
    assert body["status"] == "Order Approved"
    assert body["suggestedBooks"], body
    for book in body["suggestedBooks"]:
        assert set(book) >= {"bookId", "title", "author"}
        assert book["title"] not in ("Book A", "Book B")
    assert body["execution"]["state"] in ("queued", "executed")
    order = client.get(f"/orders/{body['orderId']}").json()
    assert order["status"] == "Order Approved"
    assert {e["event"] for e in order["events"]} == set("abcdef")
    assert_respects_partial_order(order)
    assert order["vectorClock"] == [3, 2, 1]


def test_explicit_text_plain_body_is_parsed_as_json(client: httpx.Client) -> None:
    response = client.post(
        "/checkout",
        content=json.dumps(course_page_request()).encode(),
        headers={"Content-Type": "text/plain;charset=UTF-8", "Origin": "null"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "Order Approved"
    assert response.headers["access-control-allow-origin"] == "*"


def test_full_spec_request_as_json_with_preflight(client: httpx.Client) -> None:
    preflight = client.options(
        "/checkout",
        headers={
            "Origin": "null",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code in (200, 204)
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "content-type" in preflight.headers["access-control-allow-headers"].lower()
    response = client.post("/checkout", json=full_spec_request(), headers={"Origin": "null"})
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == "*"
    body = response.json()
    assert body["status"] == "Order Approved", body
    titles = {b["title"] for b in body["suggestedBooks"]}
    assert body["suggestedBooks"] and "Designing Data-Intensive Applications" not in titles


REJECTIONS = [
    ("empty items", {"items": []}, "no items"),
    ("missing name", {"user": {"contact": "john.doe@example.com"}}, "your name"),
    ("unknown book", {"items": [{"name": "No Such Book 42", "quantity": 1}]}, "No Such Book 42"),
    (
        "bad Luhn",
        {"creditCard": {"number": "4111111111111112", "expirationDate": "12/39", "cvv": CVV}},
        "not valid",
    ),
    (
        "expired card",
        {"creditCard": {"number": CARD, "expirationDate": "12/25", "cvv": CVV}},
        "expired",
    ),
    ("bad CVV", {"creditCard": {"number": CARD, "expirationDate": "12/39", "cvv": "12"}}, "CVV"),
    ("terms not accepted", {"termsAccepted": False}, "terms"),
    ("fraud rule", {"user": {"name": "John Doe", "contact": "j@mailinator.com"}}, "throw-away"),
    (
        "declined card",
        {"creditCard": {"number": "4000000000000002", "expirationDate": "12/39", "cvv": CVV}},
        "declined",
    ),
]


@pytest.mark.parametrize(("cause", "changes", "words"), REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_every_rejection_cause_is_200_rejected_with_a_reason(
    client: httpx.Client, cause: str, changes: dict[str, Any], words: str
) -> None:
    response = post_like_the_course_page(client, course_page_request(**changes))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "Order Rejected", (cause, body)
    assert body["suggestedBooks"] == []
    assert words.lower() in body["reason"].lower(), (cause, body["reason"])
    order = client.get(f"/orders/{body['orderId']}").json()
    assert order["status"] == "Order Rejected"
    assert order["reason"] == body["reason"]
    assert any(not e["ok"] for e in order["events"])
    assert_respects_partial_order(order)
    assert card_secrets_in(response.text) == []


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["access-control-allow-origin"] == "*"
    error = response.json()["error"]
    assert error["code"] and error["message"]
    return str(error["message"])


def test_bad_input_is_a_json_400_naming_the_problem(client: httpx.Client) -> None:
    headers = {"Origin": ORIGIN}
    assert "JSON" in _error(client.post("/checkout", content=b"{oops", headers=headers), 400)
    assert "object" in _error(client.post("/checkout", content=b"[1,2,3]", headers=headers), 400)
    wrong = course_page_request(items=[{"name": "Book A", "quantity": "2"}])
    message = _error(client.post("/checkout", json=wrong, headers=headers), 400)
    assert "items[0].quantity" in message
    wrong = course_page_request(creditCard={"number": 4111111111111111, "cvv": CVV})
    message = _error(client.post("/checkout", json=wrong, headers=headers), 400)
    assert "creditCard.number" in message and CARD not in message


def test_limits_on_body_items_and_quantity(client: httpx.Client) -> None:
    big = course_page_request(userComment="x" * (1024 * 1024 + 10))
    _error(client.post("/checkout", json=big, headers={"Origin": ORIGIN}), 413)
    many = course_page_request(items=[{"name": f"Book {n}", "quantity": 1} for n in range(101)])
    assert "100" in _error(client.post("/checkout", json=many), 400)
    heavy = course_page_request(items=[{"name": "Book A", "quantity": 101}])
    assert "items[0].quantity" in _error(client.post("/checkout", json=heavy), 400)
    assert client.get("/healthz").json() == {"status": "ok"}


def _expected(n: int) -> tuple[str, dict[str, Any]]:
    """Order n of the concurrent batch: a mix of approvals and rejections."""
    if n % 5 == 1:
        return "Order Rejected", course_page_request(items=[])
    if n % 5 == 2:
        card = {"number": "4111111111111112", "expirationDate": "12/39", "cvv": CVV}
        return "Order Rejected", course_page_request(creditCard=card)
    if n % 5 == 3:
        return "Order Rejected", course_page_request(user={"name": "X", "contact": "x@yopmail.com"})
    return "Order Approved", course_page_request()


async def _post_all(base_url: str, count: int) -> list[tuple[str, httpx.Response]]:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(base_url=base_url, timeout=60.0, limits=limits) as client:

        async def one(n: int) -> tuple[str, httpx.Response]:
            want, body = _expected(n)
            return want, await client.post("/checkout", content=json.dumps(body).encode())

        return await asyncio.gather(*(one(n) for n in range(count)))


def test_200_concurrent_checkouts_all_answered_correctly_and_leave_no_cached_order(
    system: System, client: httpx.Client
) -> None:
    results = asyncio.run(_post_all(system.base_url, 200))
    order_ids = []
    for want, response in results:
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == want, body
        assert isinstance(body["suggestedBooks"], list)
        assert bool(body["suggestedBooks"]) == (want == "Order Approved")
        order_ids.append(body["orderId"])
    assert len(set(order_ids)) == 200
    for order_id in order_ids:
        order = client.get(f"/orders/{order_id}").json()
        assert order["clockErrors"] == [], order
        assert_respects_partial_order(order)
    deadline = time.monotonic() + 15
    while True:
        services = client.get("/api/cluster").json()["services"]
        cached = {s["name"]: s["cachedOrders"] for s in services if s["cachedOrders"] is not None}
        if set(cached) == {
            "transaction-verification",
            "fraud-detection",
            "suggestions",
        } and not any(cached.values()):
            break
        assert time.monotonic() < deadline, f"services still hold finished orders: {cached}"
        time.sleep(0.2)


_EVENT_LINE = re.compile(r"order=(\S+) event=([a-f])\S* .*?clock=\[(\d+),(\d+),(\d+)\]")


def test_logged_events_respect_the_partial_order(system: System, client: httpx.Client) -> None:
    order_id = post_like_the_course_page(client, course_page_request()).json()["orderId"]
    deadline = time.monotonic() + 5
    while True:
        logged: dict[str, tuple[int, ...]] = {}
        for oid, event, *clock in _EVENT_LINE.findall(system.log()):
            if oid == order_id:
                logged[event] = tuple(int(x) for x in clock)
        if set(logged) == set("abcdef") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert set(logged) == set("abcdef"), logged
    for before, after in EDGES:
        assert vclock.happened_before(logged[before], logged[after]), (before, after, logged)


def test_no_card_number_or_cvv_in_any_log_line_or_response(
    system: System, client: httpx.Client
) -> None:
    answer = post_like_the_course_page(client, course_page_request())
    order_id = answer.json()["orderId"]
    for text in (
        answer.text,
        client.get(f"/orders/{order_id}").text,
        client.get("/api/orders?limit=1000").text,
        client.get(f"/orders/{order_id}/trace").text,
    ):
        assert card_secrets_in(text) == []
    log = system.log()
    assert "order=" in log  # the services' logs are captured
    assert CARD not in log
    assert "4111 1111 1111 1111" not in log
    leaked = [line for line in log.splitlines() if card_secrets_in(line)]
    assert leaked == []


def test_unknown_routes_and_orders_are_json_404(client: httpx.Client) -> None:
    _error(client.get("/orders/no-such-order", headers={"Origin": ORIGIN}), 404)
    _error(client.get("/no/such/page", headers={"Origin": ORIGIN}), 404)
    _error(client.put("/checkout", headers={"Origin": ORIGIN}), 405)


def test_cluster_shows_every_service_with_its_pid(system: System, client: httpx.Client) -> None:
    cluster = client.get("/api/cluster").json()
    pids = system.pids()
    for service in cluster["services"]:
        name = service["name"]
        if service["replicaId"] is not None:
            name = f"{name}-{service['replicaId']}"
        assert service["healthy"], service
        assert service["pid"] == pids[name], (service, pids)
    assert len(cluster["services"]) == 9


def test_read_api_and_pages(client: httpx.Client) -> None:
    books = client.get("/api/books", params={"q": "tolkien"}).json()
    assert books and all("Tolkien" in b["author"] for b in books)
    assert client.get("/openapi.json").json()["paths"]["/checkout"]["post"]
    shop = client.get("/")
    assert shop.status_code == 200 and "text/html" in shop.headers["content-type"]
