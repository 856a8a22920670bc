"""POST /checkout under abuse: length limits, admission control, idempotency keys, full disks."""

from __future__ import annotations

import asyncio

import httpx
from orchestrator_fakes import FakePipeline, FakeTracker
from starlette.responses import Response
from test_orchestrator_app import assert_error, course_request

from bookstore.grpcutil import ServiceUnavailable
from bookstore.orchestrator.app import create_app
from bookstore.orchestrator.idempotency import IdempotencyKeys
from bookstore.orchestrator.store import OrderStore
from bookstore.settings import Settings


async def test_a_text_field_over_its_limit_is_400_naming_it(client: httpx.AsyncClient) -> None:
    response = await client.post("/checkout", json=course_request(userComment="x" * 1001))
    assert assert_error(response, 400, "FIELD_TOO_LONG") == "userComment: at most 1000 characters"
    long_title = course_request(items=[{"name": "t" * 301, "quantity": 1}])
    response = await client.post("/checkout", json=long_title)
    assert assert_error(response, 400, "FIELD_TOO_LONG") == "items[0].name: at most 300 characters"
    many = course_request(notificationPreferences=["email"] * 21)
    message = assert_error(await client.post("/checkout", json=many), 400, "FIELD_TOO_LONG")
    assert message == "notificationPreferences: at most 20 entries"


async def test_a_text_field_at_its_limit_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.post("/checkout", json=course_request(userComment="x" * 1000))
    assert response.status_code == 200 and response.json()["status"] == "Order Approved"


async def test_the_openapi_document_states_the_limits(client: httpx.AsyncClient) -> None:
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    comment = schemas["CheckoutRequest"]["properties"]["userComment"]["anyOf"][0]
    assert comment["maxLength"] == 1000


async def test_beyond_the_checkouts_in_flight_the_answer_is_503_with_retry_after(
    pipeline: FakePipeline, tracker: FakeTracker
) -> None:
    settings = Settings(execution_wait_s=0.2, checkout_timeout_s=30.0, max_in_flight=2)
    app = create_app(settings, pipeline, tracker, store=OrderStore(100))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    pipeline.gate = asyncio.Event()
    async with httpx.AsyncClient(transport=transport, base_url="http://o") as client:
        admitted = [
            asyncio.create_task(client.post("/checkout", json=course_request())) for _ in range(2)
        ]
        for _ in admitted:
            await pipeline.arrivals.get()
        refused = await client.post("/checkout", json=course_request())
        assert_error(refused, 503, "BUSY")
        assert refused.headers["retry-after"] == "1"
        pipeline.gate.set()
        for task in admitted:
            assert (await task).json()["status"] == "Order Approved"
        after = await client.post("/checkout", json=course_request())
        assert after.json()["status"] == "Order Approved"


async def test_a_retry_with_the_same_key_and_body_gets_the_same_answer_and_one_order(
    client: httpx.AsyncClient, tracker: FakeTracker
) -> None:
    headers = {"Idempotency-Key": "retry-1"}
    first = await client.post("/checkout", json=course_request(), headers=headers)
    second = await client.post("/checkout", json=course_request(), headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert second.headers["idempotent-replayed"] == "true"
    assert len(tracker.enqueued) == 1


async def test_a_concurrent_retry_waits_for_the_first_and_places_one_order(
    client: httpx.AsyncClient, pipeline: FakePipeline, tracker: FakeTracker
) -> None:
    pipeline.delay_s = 0.05
    headers = {"Idempotency-Key": "twice-at-once"}
    answers = await asyncio.gather(
        *(client.post("/checkout", json=course_request(), headers=headers) for _ in range(5))
    )
    assert len({a.content for a in answers}) == 1
    assert len(pipeline.runs) == 1 and len(tracker.enqueued) == 1


async def test_the_same_key_with_another_body_is_422(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "reused"}
    await client.post("/checkout", json=course_request(), headers=headers)
    other = course_request(userComment="something else")
    message = assert_error(
        await client.post("/checkout", json=other, headers=headers), 422, "IDEMPOTENCY_KEY_REUSED"
    )
    assert "Idempotency-Key" in message


async def test_an_answer_that_placed_no_order_does_not_keep_the_key(
    client: httpx.AsyncClient, tracker: FakeTracker
) -> None:
    headers = {"Idempotency-Key": "after-503"}
    tracker.enqueue_error = ServiceUnavailable("order-queue", "unavailable")
    failed = await client.post("/checkout", json=course_request(), headers=headers)
    assert failed.status_code == 503
    tracker.enqueue_error = None
    retried = await client.post("/checkout", json=course_request(), headers=headers)
    assert retried.json()["status"] == "Order Approved"
    assert len(tracker.enqueued) == 1


async def test_an_overlong_key_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/checkout", json=course_request(), headers={"Idempotency-Key": "k" * 256}
    )
    assert "Idempotency-Key" in assert_error(response, 400, "INVALID_IDEMPOTENCY_KEY")


async def test_keys_expire_and_are_bounded() -> None:
    now = [0.0]
    keys = IdempotencyKeys(3, 10_000, kept_s=100.0, clock=lambda: now[0])
    runs = 0

    async def run() -> Response:
        nonlocal runs
        runs += 1
        return Response(b"{}", media_type="application/json")

    await keys.answer("a", b"d", run)
    await keys.answer("a", b"d", run)
    assert runs == 1
    now[0] = 101.0
    await keys.answer("a", b"d", run)
    assert runs == 2
    for key in "bcdef":
        await keys.answer(key, b"d", run)
    assert len(keys) == 3


async def test_a_full_queue_disk_is_503_naming_it(
    client: httpx.AsyncClient, tracker: FakeTracker
) -> None:
    tracker.enqueue_error = ServiceUnavailable("order-queue", "DISK_FULL: no space left")
    message = assert_error(await client.post("/checkout", json=course_request()), 503, "DISK_FULL")
    assert "disk is full" in message and "order-queue" in message
    assert "no space left" not in message


async def test_a_full_disk_answers_at_once(client: httpx.AsyncClient, tracker: FakeTracker) -> None:
    tracker.enqueue_error = ServiceUnavailable("order-queue", "DISK_FULL: no space left")
    response = await client.post("/checkout", json=course_request())
    assert response.status_code == 503
    assert tracker.enqueue_calls == 1
