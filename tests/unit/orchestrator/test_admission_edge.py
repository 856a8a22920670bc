"""Admission control in the app: refusals before routing, and which answers are samples."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from fastapi import FastAPI
from orchestrator_fakes import FakePipeline, FakeTracker
from starlette.types import Message
from test_orchestrator_app import assert_error, course_request

from bookstore.grpcutil import ServiceUnavailable
from bookstore.orchestrator.admission import AdaptiveLimit, Ticket
from bookstore.orchestrator.app import create_app
from bookstore.orchestrator.store import OrderStore
from bookstore.settings import Settings
from bookstore.telemetry import metrics


def _settings(**changes: object) -> Settings:
    base: dict[str, object] = {
        "execution_wait_s": 0.2,
        "checkout_timeout_s": 30.0,
        "rpc_timeout_s": 0.2,
        "enqueue_retry_s": 0.3,
    }
    return Settings(**{**base, **changes})  # type: ignore[arg-type]


@pytest.fixture
def app(pipeline: FakePipeline, tracker: FakeTracker) -> FastAPI:
    """An app whose limit is 4 (the floor, where adaptation starts) and whose
    checkouts wait for `pipeline.gate`."""
    pipeline.gate = asyncio.Event()
    return create_app(_settings(), pipeline, tracker, store=OrderStore(100))


@pytest.fixture
async def gated(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://o") as client:
        yield client


async def _fill(
    client: httpx.AsyncClient, pipeline: FakePipeline, count: int
) -> list[asyncio.Task[httpx.Response]]:
    admitted = [
        asyncio.create_task(client.post("/checkout", json=course_request())) for _ in range(count)
    ]
    for _ in admitted:
        await pipeline.arrivals.get()
    return admitted


def _sample(name: str, labels: dict[str, str] | None = None) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels or {}) or 0.0


async def test_adaptive_admission_starts_at_the_floor_and_the_admitted_are_approved(
    gated: httpx.AsyncClient, pipeline: FakePipeline
) -> None:
    admitted = await _fill(gated, pipeline, 4)
    admission = (await gated.get("/api/cluster")).json()["admission"]
    assert admission == {
        "limit": 4,
        "inFlight": 4,
        "ceiling": 256,
        "floor": 4,
        "adaptive": True,
        "noLoadMs": None,
    }
    for _ in range(3):
        refused = await gated.post("/checkout", json=course_request())
        assert_error(refused, 503, "BUSY")
        assert refused.headers["retry-after"] == "1"
    assert pipeline.arrivals.empty()  # the refused never reached the pipeline
    assert pipeline.gate is not None
    pipeline.gate.set()
    for task in admitted:
        assert (await task).json()["status"] == "Order Approved"
    admission = (await gated.get("/api/cluster")).json()["admission"]
    assert admission["inFlight"] == 0 and admission["noLoadMs"] > 0


async def test_a_refusal_reads_no_body_and_has_the_error_headers_and_retry_after(
    app: FastAPI, gated: httpx.AsyncClient, pipeline: FakePipeline
) -> None:
    admitted = await _fill(gated, pipeline, 4)
    sent: list[Message] = []

    async def receive() -> Message:
        raise AssertionError("a refused checkout's body was read")

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/checkout",
        "raw_path": b"/checkout",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"o"), (b"content-length", b"10")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    start, body = sent
    assert start["status"] == 503
    headers = {name.decode(): value.decode() for name, value in start["headers"]}
    assert orjson.loads(body["body"])["error"]["code"] == "BUSY"
    assert headers["content-length"] == str(len(body["body"]))
    assert headers["retry-after"] == "1"
    other_error = await gated.get("/nowhere")
    assert other_error.status_code == 404
    assert set(headers) - {"retry-after"} == set(other_error.headers)
    assert all(
        headers[name] == other_error.headers[name]
        for name in other_error.headers
        if name.startswith("access-control-") or name == "content-type"
    )
    assert pipeline.gate is not None
    pipeline.gate.set()
    await asyncio.gather(*admitted)


async def test_a_refusal_counts_as_an_unavailable_checkout_and_a_503_on_checkout(
    gated: httpx.AsyncClient, pipeline: FakePipeline
) -> None:
    admitted = await _fill(gated, pipeline, 4)
    unavailable = _sample("bookstore_checkouts_total", {"outcome": "unavailable"})
    timed = _sample("bookstore_checkout_duration_seconds_count")
    http = {"method": "POST", "route": "/checkout", "code": "503"}
    http_503 = _sample("bookstore_http_requests_total", http)
    assert_error(await gated.post("/checkout", json=course_request()), 503, "BUSY")
    assert _sample("bookstore_checkouts_total", {"outcome": "unavailable"}) == unavailable + 1
    assert _sample("bookstore_checkout_duration_seconds_count") == timed + 1
    assert _sample("bookstore_http_requests_total", http) == http_503 + 1
    exposition = (await gated.get("/metrics")).text
    assert "bookstore_admission_limit 4.0" in exposition
    assert "bookstore_checkouts_in_flight 4.0" in exposition
    assert pipeline.gate is not None
    pipeline.gate.set()
    await asyncio.gather(*admitted)


async def test_approved_checkouts_are_samples_503s_drops_and_other_answers_neither(
    client: httpx.AsyncClient, pipeline: FakePipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers: list[tuple[float | None, bool]] = []
    done = AdaptiveLimit.done

    def recording(
        self: AdaptiveLimit,
        ticket: Ticket,
        now: float,
        latency_s: float | None,
        dropped: bool = False,
    ) -> None:
        answers.append((latency_s, dropped))
        done(self, ticket, now, latency_s, dropped)

    monkeypatch.setattr(AdaptiveLimit, "done", recording)
    key = {"Idempotency-Key": "sampled-once"}
    assert (await client.post("/checkout", json=course_request())).status_code == 200
    assert (await client.post("/checkout", json=course_request(), headers=key)).status_code == 200
    replayed = await client.post("/checkout", json=course_request(), headers=key)
    assert replayed.headers["idempotent-replayed"] == "true"
    assert (await client.post("/checkout", content=b"{not json")).status_code == 400
    pipeline.reject_reason = "out of stock"
    rejected = await client.post("/checkout", json=course_request())
    assert rejected.json()["status"] == "Order Rejected"
    pipeline.error = ServiceUnavailable("fraud-detection", "timed out")
    assert_error(await client.post("/checkout", json=course_request()), 503, "SERVICE_UNAVAILABLE")
    assert (await client.get("/api/books")).status_code == 200  # not a checkout at all
    approved, keyed, replay, invalid, rejection, unavailable = answers
    for latency_s, dropped in (approved, keyed):
        assert latency_s is not None and latency_s > 0 and not dropped
    assert replay == invalid == rejection == (None, False)
    assert unavailable == (None, True)
