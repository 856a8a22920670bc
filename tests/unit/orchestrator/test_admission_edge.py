"""Admission control in the app: checkouts beyond the slots wait, and are refused only
at their deadline, before routing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from fastapi import FastAPI
from orchestrator_fakes import FakePipeline, FakeTracker
from starlette.types import Message
from test_orchestrator_app import assert_error, course_request

from bookstore.orchestrator import admission_edge
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


SLOTS = 4


@pytest.fixture
def app(pipeline: FakePipeline, tracker: FakeTracker) -> FastAPI:
    """An app with 4 slots, where a checkout waits 50 ms for one at most, and whose
    checkouts wait for `pipeline.gate`."""
    pipeline.gate = asyncio.Event()
    settings = _settings(max_in_flight=SLOTS, admission_wait_s=0.05)
    return create_app(settings, pipeline, tracker, store=OrderStore(100))


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


def _durations() -> float:
    """Checkouts timed, every outcome."""
    return sum(
        _sample("bookstore_checkout_duration_seconds_count", {"outcome": outcome})
        for outcome in metrics.CHECKOUT_OUTCOMES
    )


async def test_beyond_the_slots_a_checkout_waits_and_is_approved_once_a_slot_frees(
    pipeline: FakePipeline, tracker: FakeTracker
) -> None:
    pipeline.gate = asyncio.Event()
    settings = _settings(max_in_flight=SLOTS, admission_wait_s=60.0)
    app = create_app(settings, pipeline, tracker, store=OrderStore(100))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://o") as client:
        admitted = await _fill(client, pipeline, SLOTS)
        later = [
            asyncio.create_task(client.post("/checkout", json=course_request())) for _ in range(3)
        ]
        for _ in range(10_000):  # a bound on polls; the suite's timeout is the backstop
            if (await client.get("/api/cluster")).json()["admission"]["waiting"] == 3:
                break
            await asyncio.sleep(0.01)
        admission = (await client.get("/api/cluster")).json()["admission"]
        assert admission == {
            "inFlight": SLOTS,
            "capacity": SLOTS,
            "maxInFlight": SLOTS,
            "waiting": 3,
            "overloaded": False,
            "maxWaitMs": 60_000,
            "unqueuedMs": 0,  # nothing answered yet
        }
        assert pipeline.arrivals.empty()  # the waiting have not reached the pipeline
        pipeline.gate.set()
        for task in [*admitted, *later]:
            assert (await task).json()["status"] == "Order Approved"
        admission = (await client.get("/api/cluster")).json()["admission"]
        assert admission["inFlight"] == 0 and admission["waiting"] == 0
        # The first four were admitted at once, and the last answered with nobody waiting.
        assert admission["unqueuedMs"] > 0


async def test_a_checkout_still_waiting_at_its_deadline_is_refused_busy(
    gated: httpx.AsyncClient, pipeline: FakePipeline
) -> None:
    admitted = await _fill(gated, pipeline, SLOTS)
    for _ in range(3):
        refused = await gated.post("/checkout", json=course_request())
        assert_error(refused, 503, "BUSY")
        assert refused.headers["retry-after"] == "1"
    assert pipeline.arrivals.empty()  # the refused never reached the pipeline
    assert (await gated.get("/api/cluster")).json()["admission"]["waiting"] == 0
    assert pipeline.gate is not None
    pipeline.gate.set()
    for task in admitted:
        assert (await task).json()["status"] == "Order Approved"


async def test_a_refusal_reads_no_body_and_has_the_error_headers_and_retry_after(
    app: FastAPI, gated: httpx.AsyncClient, pipeline: FakePipeline
) -> None:
    admitted = await _fill(gated, pipeline, SLOTS)
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
    admitted = await _fill(gated, pipeline, SLOTS)
    unavailable = _sample("bookstore_checkouts_total", {"outcome": "unavailable"})
    timed = _durations()
    http = {"method": "POST", "route": "/checkout", "code": "503"}
    http_503 = _sample("bookstore_http_requests_total", http)
    assert_error(await gated.post("/checkout", json=course_request()), 503, "BUSY")
    assert _sample("bookstore_checkouts_total", {"outcome": "unavailable"}) == unavailable + 1
    assert _durations() == timed + 1
    assert _sample("bookstore_http_requests_total", http) == http_503 + 1
    exposition = (await gated.get("/metrics")).text
    assert "bookstore_checkouts_in_flight 4.0" in exposition
    assert "bookstore_checkouts_waiting 0.0" in exposition
    assert pipeline.gate is not None
    pipeline.gate.set()
    await asyncio.gather(*admitted)


async def test_an_admitted_checkouts_duration_counts_from_its_arrival(
    gated: httpx.AsyncClient, pipeline: FakePipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Early:
        """Admission control's clock, 100 s behind: as if every checkout arrived
        100 s before it reached the route."""

        @staticmethod
        def perf_counter() -> float:
            return time.perf_counter() - 100.0

    monkeypatch.setattr(admission_edge, "time", Early)
    approved = {"outcome": "approved"}
    before = _sample("bookstore_checkout_duration_seconds_sum", approved)
    assert pipeline.gate is not None
    pipeline.gate.set()
    answer = await gated.post("/checkout", json=course_request())
    assert answer.json()["status"] == "Order Approved"
    assert _sample("bookstore_checkout_duration_seconds_sum", approved) - before >= 100.0
