from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from checkout_requests import card_secrets_in
from orchestrator_fakes import UNAVAILABLE, FakeCluster, FakePipeline, FakeStock, FakeTracker

from bookstore.catalogue import load_catalogue
from bookstore.grpcutil import ServiceUnavailable
from bookstore.orchestrator.app import create_app
from bookstore.orchestrator.components import lifespan_of
from bookstore.orchestrator.execution import ExecutionInfo
from bookstore.orchestrator.pipeline import CheckoutTimeout
from bookstore.orchestrator.store import OrderStore
from bookstore.settings import Settings
from bookstore.telemetry import metrics

CARD = "4111111111111111"
ORIGIN = {"Origin": "http://localhost:8080"}


def course_request(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "user": {"name": "Ada Lovelace", "contact": "ada@example.org"},
        "creditCard": {"number": CARD, "expirationDate": "12/99", "cvv": "123"},
        "userComment": "",
        "items": [{"name": "Book A", "quantity": 1}, {"name": "Book B", "quantity": 2}],
        "billingAddress": {
            "street": "1 Main St",
            "city": "Tartu",
            "state": "Tartumaa",
            "zip": "50090",
            "country": "Estonia",
        },
        "shippingMethod": "Standard",
        "giftWrapping": False,
        "termsAccepted": True,
    }
    body.update(changes)
    return body


async def post_plain(client: httpx.AsyncClient, body: bytes) -> httpx.Response:
    """POST as the course page does: a JSON body with no Content-Type header."""
    request = client.build_request("POST", "/checkout", content=body, headers=ORIGIN)
    assert "content-type" not in request.headers
    return await client.send(request)


def assert_error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["access-control-allow-origin"] == "*"
    error = response.json()["error"]
    assert error["code"] == code
    assert "Traceback" not in response.text
    return str(error["message"])


async def test_course_page_request_without_content_type_is_approved_and_executed(
    client: httpx.AsyncClient, tracker: FakeTracker
) -> None:
    response = await post_plain(client, json.dumps(course_request()).encode())
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    body = response.json()
    assert body["status"] == "Order Approved"
    assert body["suggestedBooks"] == [
        {"bookId": "b002", "title": "Distributed Systems", "author": "Maarten van Steen"}
    ]
    assert body["vectorClock"] == [3, 2, 1]
    assert body["execution"]["state"] == "executed"
    assert body["execution"]["executor"] == 4
    [(order_id, items, name)] = tracker.enqueued
    assert order_id == body["orderId"]
    assert name == "Ada Lovelace"
    assert [(i.title, i.quantity) for i in items] == [("Book A", 1), ("Book B", 2)]
    assert all(i.book_id for i in items)


async def test_an_executed_order_carries_its_token_amount_and_captured_payment(
    client: httpx.AsyncClient, tracker: FakeTracker
) -> None:
    body = (await client.post("/checkout", json=course_request())).json()
    catalogue = load_catalogue()
    prices = [catalogue.by_title(t).price_cents for t in ("Book A", "Book B")]  # type: ignore[union-attr]
    amount = prices[0] + 2 * prices[1]
    assert tracker.payments[body["orderId"]] == ("tok_test", amount)
    assert body["payment"] == {
        "state": "captured",
        "amount": f"{amount // 100}.{amount % 100:02d}",
        "amountCents": amount,
        "currency": "EUR",
    }
    order = (await client.get(f"/orders/{body['orderId']}")).json()
    assert order["payment"] == body["payment"]


async def test_an_order_rejected_at_execution_is_answered_rejected_with_its_reason(
    client: httpx.AsyncClient, tracker: FakeTracker
) -> None:
    tracker.reject_at_execution = "out of stock: Book B"
    body = (await client.post("/checkout", json=course_request())).json()
    assert body["status"] == "Order Rejected"
    assert body["reason"] == "out of stock: Book B"
    assert body["suggestedBooks"] == []
    assert body["execution"]["state"] == "rejected"
    assert "payment" not in body
    order = (await client.get(f"/orders/{body['orderId']}")).json()
    assert (order["status"], order["reason"], order["payment"]) == (
        "Order Rejected",
        "out of stock: Book B",
        None,
    )
    assert order["suggestedBooks"] == []


async def test_approved_order_not_executed_in_time_reports_queued(
    client: httpx.AsyncClient, tracker: FakeTracker
) -> None:
    tracker.execute = False
    response = await client.post("/checkout", json=course_request())
    assert response.json()["status"] == "Order Approved"
    assert response.json()["execution"] == {"state": "queued"}


async def test_business_rejection_is_200_with_reason_and_no_suggestions(
    client: httpx.AsyncClient, pipeline: FakePipeline, tracker: FakeTracker
) -> None:
    pipeline.reject_reason = "Your card has expired."
    response = await client.post("/checkout", json=course_request())
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "Order Rejected"
    assert body["suggestedBooks"] == []
    assert body["reason"] == "Your card has expired."
    assert tracker.enqueued == []


async def test_terms_and_unknown_fields_are_accepted(
    client: httpx.AsyncClient, pipeline: FakePipeline
) -> None:
    body = course_request(termsAndConditionsAccepted=True, somethingNew={"x": [1]})
    del body["termsAccepted"]
    response = await client.post("/checkout", json=body)
    assert response.json()["status"] == "Order Approved"
    assert pipeline.runs[0][1].terms_accepted


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (b"{not json", "INVALID_JSON", "not valid JSON"),
        (b"", "INVALID_JSON", "not valid JSON"),
        (b"[1, 2]", "INVALID_REQUEST", "body: expected a JSON object"),
        (b'"text"', "INVALID_REQUEST", "body: expected a JSON object"),
        (
            b'{"items": [{"name": "Book A", "quantity": "2"}]}',
            "INVALID_FIELD",
            "items[0].quantity: expected an integer",
        ),
        (
            b'{"items": [{"name": "Book A", "quantity": 1.5}]}',
            "INVALID_FIELD",
            "items[0].quantity: expected an integer",
        ),
        (b'{"items": {"name": "Book A"}}', "INVALID_FIELD", "items: expected an array"),
        (b'{"user": "ada"}', "INVALID_FIELD", "user: expected an object"),
        (b'{"user": {"name": 7}}', "INVALID_FIELD", "user.name: expected a string"),
        (b'{"termsAccepted": "yes"}', "INVALID_FIELD", "termsAccepted: expected a boolean"),
        (
            b'{"creditCard": {"number": 4111111111111111}}',
            "INVALID_FIELD",
            "creditCard.number: expected a string",
        ),
    ],
)
async def test_bad_input_is_400_naming_the_field(
    client: httpx.AsyncClient, pipeline: FakePipeline, body: bytes, code: str, message: str
) -> None:
    response = await post_plain(client, body)
    assert message in assert_error(response, 400, code)
    assert pipeline.runs == []
    assert "4111111111111111" not in response.text


async def test_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    big = json.dumps(course_request(userComment="x" * (1024 * 1024))).encode()
    response = await post_plain(client, big)
    assert_error(response, 413, "BODY_TOO_LARGE")


async def test_body_over_the_limit_without_content_length_is_413(
    client: httpx.AsyncClient,
) -> None:
    async def chunks() -> Any:
        for _ in range(20):
            yield b" " * 65536
        yield b"{}"

    response = await client.post("/checkout", content=chunks(), headers=ORIGIN)
    assert_error(response, 413, "BODY_TOO_LARGE")


async def test_too_many_distinct_items_is_400(client: httpx.AsyncClient) -> None:
    items = [{"name": f"Book {n}", "quantity": 1} for n in range(101)]
    message = assert_error(
        await client.post("/checkout", json=course_request(items=items)), 400, "TOO_MANY_ITEMS"
    )
    assert "100" in message
    repeated = [{"name": "Book A", "quantity": 1}] * 101
    assert_error(
        await client.post("/checkout", json=course_request(items=repeated)), 400, "TOO_MANY_ITEMS"
    )
    hundred = [{"name": f"Book {n}", "quantity": 1} for n in range(100)]
    ok = await client.post("/checkout", json=course_request(items=hundred))
    assert ok.status_code == 200


async def test_quantity_over_the_limit_is_400(client: httpx.AsyncClient) -> None:
    items = [{"name": "Book A", "quantity": 1}, {"name": "Book B", "quantity": 101}]
    message = assert_error(
        await client.post("/checkout", json=course_request(items=items)),
        400,
        "QUANTITY_TOO_LARGE",
    )
    assert message.startswith("items[1].quantity")


@pytest.mark.parametrize(
    "error",
    [UNAVAILABLE, CheckoutTimeout("suggestions", "no answer within 1.0 s")],
)
async def test_unavailable_service_is_503_naming_it(
    client: httpx.AsyncClient, pipeline: FakePipeline, store: OrderStore, error: ServiceUnavailable
) -> None:
    pipeline.error = error
    response = await client.post("/checkout", json=course_request())
    message = assert_error(response, 503, "SERVICE_UNAVAILABLE")
    assert error.service in message
    assert response.json()["error"]["service"] == error.service
    [record] = store.recent(1)
    assert record.status == "Error"


async def test_a_pipeline_that_hangs_gives_503_in_bounded_time(
    client: httpx.AsyncClient, pipeline: FakePipeline
) -> None:
    pipeline.delay_s = 30.0
    response = await client.post("/checkout", json=course_request())
    assert_error(response, 503, "SERVICE_UNAVAILABLE")


async def test_queue_unavailable_is_503_and_never_approved(
    client: httpx.AsyncClient, tracker: FakeTracker, store: OrderStore
) -> None:
    tracker.enqueue_error = ServiceUnavailable("order-queue", "unavailable")
    response = await client.post("/checkout", json=course_request())
    assert "order-queue" in assert_error(response, 503, "SERVICE_UNAVAILABLE")
    assert "Order Approved" not in response.text
    [record] = store.recent(1)
    assert record.status == "Error"


async def test_an_enqueue_whose_answer_was_lost_is_approved_once_the_queue_has_it(
    client: httpx.AsyncClient, tracker: FakeTracker
) -> None:
    tracker.execute = False
    tracker.lose_enqueue_answer = True  # on disk, but the call reported a failure
    response = await client.post("/checkout", json=course_request())
    body = response.json()
    assert response.status_code == 200 and body["status"] == "Order Approved", body
    assert body["execution"]["state"] == "queued"
    assert [o for o, _, _ in tracker.enqueued] == [body["orderId"]]


async def test_unexpected_error_is_500_json_without_trace(
    client: httpx.AsyncClient, pipeline: FakePipeline
) -> None:
    pipeline.error = RuntimeError("secret internal detail at 10.0.0.7:50051")
    response = await client.post("/checkout", json=course_request(), headers=ORIGIN)
    assert_error(response, 500, "INTERNAL_ERROR")
    assert "10.0.0.7" not in response.text


async def test_framework_errors_are_json_with_cors(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/nowhere", headers=ORIGIN), 404, "NOT_FOUND")
    assert_error(await client.get("/checkout", headers=ORIGIN), 405, "METHOD_NOT_ALLOWED")
    message = assert_error(
        await client.get("/api/orders?limit=many", headers=ORIGIN), 400, "INVALID_REQUEST"
    )
    assert "limit" in message


async def test_preflight_is_answered(client: httpx.AsyncClient) -> None:
    response = await client.options(
        "/checkout",
        headers={
            "Origin": "null",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert response.status_code in (200, 204)
    assert response.headers["access-control-allow-origin"] == "*"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "content-type" in response.headers["access-control-allow-headers"].lower()


async def test_order_details_have_the_agreed_shape(
    client: httpx.AsyncClient, tracker: FakeTracker
) -> None:
    tracker.execute = False
    approved = (await client.post("/checkout", json=course_request())).json()
    order = (await client.get(f"/orders/{approved['orderId']}")).json()
    assert set(order) == {
        "orderId",
        "status",
        "reason",
        "createdAt",
        "items",
        "suggestedBooks",
        "vectorClock",
        "events",
        "cancel",
        "clockErrors",
        "execution",
        "payment",
    }
    assert order["status"] == "Order Approved"
    assert order["reason"] is None
    assert order["createdAt"].endswith("Z")
    assert [i["title"] for i in order["items"]] == ["Book A", "Book B"]
    assert order["vectorClock"] == [3, 2, 1]
    [event] = order["events"]
    assert event == {
        "event": "a",
        "name": "items",
        "service": "transaction-verification",
        "clock": [1, 0, 0],
        "ok": True,
        "reason": "",
        "answeredBy": "rules",
        "at": "2023-11-14T22:13:20.000Z",
        "durationMs": 0.5,
    }
    assert order["cancel"] is None
    assert order["execution"]["state"] == "queued"


async def test_order_execution_is_refreshed_from_the_tracker(
    client: httpx.AsyncClient, tracker: FakeTracker
) -> None:
    tracker.execute = False
    order_id = (await client.post("/checkout", json=course_request())).json()["orderId"]
    tracker.executed[order_id] = ExecutionInfo("executed", 2, 3, 9, "now")
    order = (await client.get(f"/orders/{order_id}")).json()
    assert order["execution"] == {
        "state": "executed",
        "executor": 2,
        "epoch": 3,
        "sequence": 9,
        "executedAt": "now",
    }


async def test_rejected_order_keeps_cancel_clocks(
    client: httpx.AsyncClient, pipeline: FakePipeline
) -> None:
    pipeline.reject_reason = "Book Z is not in our catalogue."
    order_id = (await client.post("/checkout", json=course_request())).json()["orderId"]
    order = (await client.get(f"/orders/{order_id}")).json()
    assert order["status"] == "Order Rejected"
    assert order["reason"] == "Book Z is not in our catalogue."
    assert order["cancel"] == {"clocks": {"suggestions": [1, 0, 0]}}
    assert order["execution"] is None


async def test_unknown_order_is_404_json(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/orders/nope", headers=ORIGIN), 404, "ORDER_NOT_FOUND")


async def test_recent_orders_newest_first(client: httpx.AsyncClient) -> None:
    ids = [(await client.post("/checkout", json=course_request())).json()["orderId"] for _ in "abc"]
    orders = (await client.get("/api/orders?limit=2")).json()["orders"]
    assert [o["orderId"] for o in orders] == ids[::-1][:2]
    assert set(orders[0]) == {"orderId", "status", "reason", "createdAt", "books", "execution"}
    assert orders[0]["books"] == 3


async def test_recent_orders_refresh_their_execution(
    client: httpx.AsyncClient, tracker: FakeTracker
) -> None:
    tracker.execute = False
    order_id = (await client.post("/checkout", json=course_request())).json()["orderId"]
    [listed] = (await client.get("/api/orders")).json()["orders"]
    assert listed["execution"] == {"state": "queued"}
    tracker.executed[order_id] = ExecutionInfo("executed", 1, 1, 1, "then")
    [listed] = (await client.get("/api/orders")).json()["orders"]
    assert listed["execution"]["state"] == "executed"


async def test_no_card_number_or_cvv_in_responses_or_records(
    client: httpx.AsyncClient, store: OrderStore
) -> None:
    body = course_request(creditCard={"number": CARD, "expirationDate": "12/99", "cvv": "987"})
    texts = [(await client.post("/checkout", json=body)).text]
    for record in store.recent(10):
        texts.append((await client.get(f"/orders/{record.order_id}")).text)
        texts.append(repr(record))
    texts.append((await client.get("/api/orders")).text)
    for text in texts:
        assert card_secrets_in(text, card=CARD, cvv="987") == []


async def test_books_search_and_narrowing(client: httpx.AsyncClient) -> None:
    everything = (await client.get("/api/books")).json()
    assert len(everything) >= 50
    assert set(everything[0]) == {
        "bookId",
        "title",
        "author",
        "genre",
        "price",
        "stock",
        "stockKnown",
    }
    kleppmann = (await client.get("/api/books", params={"q": "kleppmann"})).json()
    assert kleppmann and all("Kleppmann" in b["author"] for b in kleppmann)
    genre = everything[0]["genre"]
    narrowed = (await client.get("/api/books", params={"genre": genre, "title": "a"})).json()
    assert narrowed and all(b["genre"] == genre and "a" in b["title"].lower() for b in narrowed)
    assert (await client.get("/api/books", params={"q": "zzzz-no-such-book"})).json() == []


async def test_books_show_the_databases_available_copies(
    client: httpx.AsyncClient, stock: FakeStock
) -> None:
    first = load_catalogue().all()[0]
    stock.copies[first.book_id] = 3
    books = {b["bookId"]: b for b in (await client.get("/api/books")).json()}
    assert books[first.book_id]["stock"] == 3 and books[first.book_id]["stockKnown"] is True
    assert all(b["stock"] == 7 for i, b in books.items() if i != first.book_id)


async def test_books_answer_with_stock_unknown_when_the_database_does_not(
    client: httpx.AsyncClient, stock: FakeStock
) -> None:
    stock.down = True
    response = await client.get("/api/books", params={"q": "kleppmann"})
    assert response.status_code == 200
    books = response.json()
    assert books and all(b["stock"] is None and b["stockKnown"] is False for b in books)


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers=ORIGIN)
    assert response.json() == {"status": "ok"}
    assert response.headers["access-control-allow-origin"] == "*"


class _Lifecycle(FakePipeline):
    def __init__(self, log: list[str], name: str, fail: bool = False) -> None:
        super().__init__()
        self.log = log
        self.name = name
        self.fail = fail

    async def start(self) -> None:
        if self.fail:
            raise RuntimeError(f"{self.name} cannot start")
        self.log.append(f"{self.name} started")

    async def close(self) -> None:
        self.log.append(f"{self.name} closed")


async def test_lifespan_starts_owned_components_in_order_and_closes_them_in_reverse() -> None:
    log: list[str] = []
    lifespan = lifespan_of([_Lifecycle(log, "pipeline"), _Lifecycle(log, "tracker")])
    async with lifespan(None):
        assert log == ["pipeline started", "tracker started"]
    assert log == ["pipeline started", "tracker started", "tracker closed", "pipeline closed"]


async def test_lifespan_closes_what_started_when_a_later_start_fails() -> None:
    log: list[str] = []
    failing = _Lifecycle(log, "tracker", fail=True)
    with pytest.raises(RuntimeError):
        async with lifespan_of([_Lifecycle(log, "pipeline"), failing])(None):
            pass
    assert log == ["pipeline started", "pipeline closed"]


async def test_injected_components_are_left_to_the_caller() -> None:
    log: list[str] = []
    injected = create_app(
        Settings(),
        _Lifecycle(log, "pipeline"),
        FakeTracker(),
        stock=FakeStock(),
        cluster=FakeCluster(),
    )
    async with injected.router.lifespan_context(injected):
        pass
    assert log == []


def _sample(name: str, labels: dict[str, str] | None = None) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels or {}) or 0.0


def _durations() -> float:
    """Checkouts timed, every outcome."""
    return sum(
        _sample("bookstore_checkout_duration_seconds_count", {"outcome": outcome})
        for outcome in metrics.CHECKOUT_OUTCOMES
    )


async def test_metrics_count_checkouts_by_outcome_and_requests_by_route(
    client: httpx.AsyncClient,
) -> None:
    approved = _sample("bookstore_checkouts_total", {"outcome": "approved"})
    invalid = _sample("bookstore_checkouts_total", {"outcome": "invalid"})
    timed = _durations()
    assert (await client.post("/checkout", json=course_request())).status_code == 200
    assert (await client.post("/checkout", content=b"not json")).status_code == 400
    assert (await client.get("/orders/no-such-order")).status_code == 404
    answer = await client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert "bookstore_checkouts_total" in answer.text
    assert _sample("bookstore_checkouts_total", {"outcome": "approved"}) == approved + 1
    assert _sample("bookstore_checkouts_total", {"outcome": "invalid"}) == invalid + 1
    assert _durations() == timed + 2
    # The route template, never the order id.
    route = {"method": "GET", "route": "/orders/{order_id}", "code": "404"}
    assert _sample("bookstore_http_requests_total", route) >= 1
    assert 'route="/orders/no-such-order"' not in (await client.get("/metrics")).text
