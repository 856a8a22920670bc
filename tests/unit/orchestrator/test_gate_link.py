"""The app's side of the gate: the limit it shares, the refusals it folds into its
metrics, and the client address it takes from the gate's header (and from no one
else's)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from orchestrator_fakes import FakePipeline, FakeTracker
from starlette.types import Message, Receive, Scope, Send
from test_admission_edge import _fill, _sample, _settings

from bookstore.orchestrator import service
from bookstore.orchestrator.admission import AdaptiveLimit
from bookstore.orchestrator.app import create_app
from bookstore.orchestrator.gate_link import GateLink, PeerMiddleware
from bookstore.orchestrator.gate_state import PEER_HEADER, GateState
from bookstore.orchestrator.service import refusal_bytes
from bookstore.orchestrator.store import OrderStore


@pytest.fixture
def state(tmp_path: Path) -> GateState:
    return GateState.create(tmp_path / "gate.state", refusal_bytes(), 256)


@pytest.fixture
async def client(
    state: GateState, pipeline: FakePipeline, tracker: FakeTracker
) -> AsyncIterator[httpx.AsyncClient]:
    pipeline.gate = asyncio.Event()
    app = create_app(_settings(), pipeline, tracker, store=OrderStore(100), gate=state)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://o") as client,
    ):
        yield client


async def test_the_gate_sees_the_limit_fill_and_empty(
    client: httpx.AsyncClient, state: GateState, pipeline: FakePipeline
) -> None:
    assert not state.full()
    admitted = await _fill(client, pipeline, 3)
    assert not state.full()
    admitted += await _fill(client, pipeline, 1)
    assert state.full()  # 4 in flight: the floor, where the adaptive limit starts
    assert pipeline.gate is not None
    pipeline.gate.set()
    for task in admitted:
        assert (await task).json()["status"] == "Order Approved"
    assert not state.full()


async def test_the_gates_refusals_are_counted_in_the_metrics_as_the_apps_were(
    client: httpx.AsyncClient, state: GateState
) -> None:
    labels = {"method": "POST", "route": "/checkout", "code": "503"}
    before = (
        _sample("bookstore_checkouts_total", {"outcome": "unavailable"}),
        _sample("bookstore_http_requests_total", labels),
        _sample("bookstore_checkout_duration_seconds_count"),
    )
    for _ in range(3):
        state.refused(0.0002)
    text = (await client.get("/metrics")).text  # folded before the exposition
    assert 'bookstore_checkouts_total{outcome="unavailable"}' in text
    after = (
        _sample("bookstore_checkouts_total", {"outcome": "unavailable"}),
        _sample("bookstore_http_requests_total", labels),
        _sample("bookstore_checkout_duration_seconds_count"),
    )
    assert [b - a for a, b in zip(before, after, strict=True)] == [3, 3, 3]


def test_a_fold_counts_each_refusal_once_and_tells_the_limit_it_was_reached(
    state: GateState,
) -> None:
    limit = AdaptiveLimit(256, floor=1)
    link = GateLink(state, limit)
    ticket = limit.admit()
    assert ticket is not None and limit.limit == 1
    state.refused(0.001)
    state.refused(0.001)
    assert link.fold() == 2
    assert link.fold() == 0
    # the round ends with the limit reached: slow start doubles it
    limit.done(ticket, now=1.0, latency_s=0.05)
    assert limit.limit == 2
    link.publish()
    assert not state.full()


async def _client_seen(headers: list[tuple[bytes, bytes]], client: object, token: bytes) -> Scope:
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        pass

    scope = {"type": "http", "path": "/", "headers": headers, "client": client}
    await PeerMiddleware(app, token)(scope, receive, send)
    return seen[0]


async def test_the_client_address_is_taken_from_the_gates_header_only(
    state: GateState,
) -> None:
    token = state.token
    mine = (PEER_HEADER, token + b" 10.1.2.3 5555")
    scope = await _client_seen([mine, (b"host", b"o")], None, token)
    assert scope["client"] == ("10.1.2.3", 5555)
    assert scope["headers"] == [(b"host", b"o")]
    forged = (PEER_HEADER, b"not-the-token 127.0.0.1 1")
    scope = await _client_seen([forged, (b"host", b"o")], None, token)
    assert scope["client"] is None and scope["headers"] == [(b"host", b"o")]
    # the gate's header is the first; one further down is the client's own
    scope = await _client_seen([(b"host", b"o"), mine], None, token)
    assert scope["client"] is None and scope["headers"] == [(b"host", b"o")]
    # on TCP (no gate) the address is the connection's
    scope = await _client_seen([mine], ("192.0.2.1", 1), token)
    assert scope["client"] == ("192.0.2.1", 1)


def test_the_shared_state_holds_the_apps_answer_and_a_fresh_token(tmp_path: Path) -> None:
    one = GateState.create(tmp_path / "a", b"HTTP/1.1 503 x\r\n\r\n", 8)
    other = GateState(GateState.create(tmp_path / "b", b"", 8).path)
    assert one.answer == b"HTTP/1.1 503 x\r\n\r\n" and other.answer == b""
    assert len(one.token) == 32 and one.token != other.token
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o600
    one.publish(8, 8)
    assert GateState(one.path).full()


def test_the_private_directories_of_orchestrators_gone_are_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    stale = tmp_path / f"bookstore-orchestrator-{gone.pid}-abc"
    mine = tmp_path / f"bookstore-orchestrator-{os.getpid()}-def"
    other = tmp_path / "bookstore-orchestrator-unnamed"
    for directory in (stale, mine, other):
        directory.mkdir()
        (directory / "app.sock").touch()
    service._remove_stale_private_dirs()
    assert not stale.exists() and mine.exists() and other.exists()
