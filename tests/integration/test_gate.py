"""The orchestrator's gate (`orchestrator/gate.py`): the real gate process on a real
listening socket, in front of a real uvicorn app on a Unix socket, spoken to in raw
HTTP/1.1 so that every byte is under the test's control."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import uvicorn

from bookstore.orchestrator.gate import parse_head, start
from bookstore.orchestrator.gate_state import PEER_HEADER, GateState
from bookstore.orchestrator.service import refusal_bytes

CHECKOUT_BODY = b'{"items": []}'


@dataclass
class Upstream:
    """What the app behind the gate received: each request's headers and body."""

    requests: list[tuple[list[tuple[bytes, bytes]], bytes]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    hold: bool = False  # checkouts too wait for `release`, as /slow always does

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.requests.append((list(scope["headers"]), body))
        if scope["path"] == "/slow" or (self.hold and scope["path"] == "/checkout"):
            await self.release.wait()
        answer = orjson.dumps(
            {"path": scope["path"], "method": scope["method"], "bytes": len(body)}
        )
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(answer)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer})


@dataclass
class Gated:
    port: int
    state: GateState
    upstream: Upstream
    process: asyncio.subprocess.Process

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)


@asynccontextmanager
async def gated(tmp_path: Path, limit: int = 8) -> AsyncIterator[Gated]:
    upstream = Upstream()
    uds = str(tmp_path / "app.sock")
    server = uvicorn.Server(
        uvicorn.Config(
            upstream, uds=uds, lifespan="off", log_config=None, access_log=False, loop="none"
        )
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        assert not serving.done()
        await asyncio.sleep(0.01)
    listening = socket.create_server(("127.0.0.1", 0))
    state = GateState.create(tmp_path / "gate.state", refusal_bytes(), limit)
    process = await start(listening, uds, state)
    port = listening.getsockname()[1]
    listening.close()
    try:
        yield Gated(port, state, upstream, process)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 10)
        upstream.release.set()
        server.should_exit = True
        await serving


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head[:-4].split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return int(lines[0].split()[1]), headers, body


async def until_received(upstream: Upstream, count: int = 1) -> None:
    for _ in range(500):
        if len(upstream.requests) >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the app received nothing")


def post(path: str, body: bytes, extra: bytes = b"") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: shop\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n".encode()
        + extra
        + b"\r\n"
        + body
    )


def test_a_head_is_followed_only_when_its_framing_is_plain() -> None:
    head = parse_head(post("/checkout?x=1", b"{}", b"Connection: close\r\n"))
    assert not isinstance(head, bool) and head is not None
    assert (head.method, head.path, head.length, head.close) == (b"POST", b"/checkout", 2, True)
    assert parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n") is None  # not all there yet
    for unfollowed in (
        b"POST /checkout HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HEAD / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
        b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
        b"GET / HTTP/1.1\r\n folded\r\n\r\n",
        b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n",
    ):
        assert parse_head(unfollowed) is False, unfollowed


async def test_requests_are_forwarded_with_the_clients_address_under_the_token(
    tmp_path: Path,
) -> None:
    async with gated(tmp_path) as gate:
        reader, writer = await gate.connect()
        writer.write(post("/checkout", CHECKOUT_BODY) + b"GET /books HTTP/1.1\r\nHost: x\r\n\r\n")
        first, second = await read_answer(reader), await read_answer(reader)
        assert first[0] == second[0] == 200
        assert orjson.loads(first[2]) == {"path": "/checkout", "method": "POST", "bytes": 13}
        assert orjson.loads(second[2])["path"] == "/books"
        local = writer.get_extra_info("sockname")
        for headers, _ in gate.upstream.requests:
            name, value = headers[0]
            assert name == PEER_HEADER
            assert value == gate.state.token + f" {local[0]} {local[1]}".encode()
        writer.close()


async def test_beyond_the_limit_the_gate_answers_busy_and_the_app_sees_nothing(
    tmp_path: Path,
) -> None:
    async with gated(tmp_path, limit=2) as gate:
        gate.state.publish(2, 2)
        reader, writer = await gate.connect()
        for _ in range(3):  # keep-alive: each on the same connection
            writer.write(post("/checkout", CHECKOUT_BODY))
            status, headers, body = await read_answer(reader)
            assert status == 503
            assert headers[b"retry-after"] == b"1"
            assert headers[b"access-control-allow-origin"] == b"*"
            assert orjson.loads(body)["error"]["code"] == "BUSY"
        assert gate.upstream.requests == []
        count, seconds = gate.state.refusals()
        assert count == 3 and seconds > 0
        # other requests go through, and so does a checkout once there is room
        writer.write(b"GET /books HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await read_answer(reader))[0] == 200
        gate.state.publish(2, 1)
        writer.write(post("/checkout", CHECKOUT_BODY))
        assert (await read_answer(reader))[0] == 200
        assert [body for _, body in gate.upstream.requests] == [b"", CHECKOUT_BODY]
        writer.close()


async def test_the_checkouts_on_their_way_to_the_app_count_against_the_limit(
    tmp_path: Path,
) -> None:
    # The app has counted none of them yet (it publishes 0 in flight throughout).
    async with gated(tmp_path, limit=2) as gate:
        gate.upstream.hold = True
        held = [await gate.connect() for _ in range(2)]
        for _, writer in held:
            writer.write(post("/checkout", CHECKOUT_BODY))
            await writer.drain()
        await until_received(gate.upstream, 2)
        reader, writer = await gate.connect()
        writer.write(post("/checkout", CHECKOUT_BODY))
        assert (await read_answer(reader))[0] == 503
        gate.upstream.release.set()
        for held_reader, _ in held:
            assert (await read_answer(held_reader))[0] == 200
        writer.write(post("/checkout", CHECKOUT_BODY))
        assert (await read_answer(reader))[0] == 200
        for _, held_writer in [*held, (reader, writer)]:
            held_writer.close()


async def test_a_refused_body_in_pieces_is_dropped_and_the_next_request_stands(
    tmp_path: Path,
) -> None:
    async with gated(tmp_path) as gate:
        gate.state.publish(1, 1)
        reader, writer = await gate.connect()
        body = b'{"comment": "' + b"x" * 200_000 + b'"}'
        request = post("/checkout", body)
        writer.write(request[:100])  # the head, split
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(request[100:5000])
        assert (await read_answer(reader))[0] == 503  # answered before the body is in
        writer.write(request[5000:] + post("/orders", b"{}"))
        status, _, answer = await read_answer(reader)
        assert status == 200 and orjson.loads(answer) == {
            "path": "/orders",
            "method": "POST",
            "bytes": 2,
        }
        assert [b for _, b in gate.upstream.requests] == [b"{}"]
        writer.close()


async def test_a_checkout_behind_an_answer_outstanding_is_left_to_the_app(
    tmp_path: Path,
) -> None:
    # Answers go back in order: the gate cannot answer ahead of one it forwarded.
    async with gated(tmp_path) as gate:
        reader, writer = await gate.connect()
        writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        await until_received(gate.upstream)
        gate.state.publish(1, 1)
        writer.write(post("/checkout", CHECKOUT_BODY))
        await writer.drain()
        await asyncio.sleep(0.1)
        gate.upstream.release.set()
        first, second = await read_answer(reader), await read_answer(reader)
        assert orjson.loads(first[2])["path"] == "/slow"
        assert second[0] == 200 and orjson.loads(second[2])["path"] == "/checkout"
        writer.close()


async def test_a_chunked_request_is_forwarded_untouched(tmp_path: Path) -> None:
    async with gated(tmp_path) as gate:
        gate.state.publish(1, 1)  # full: yet the gate cannot follow this connection now
        reader, writer = await gate.connect()
        writer.write(
            b"POST /checkout HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n" + post("/checkout", CHECKOUT_BODY)
        )
        first, second = await read_answer(reader), await read_answer(reader)
        assert orjson.loads(first[2])["bytes"] == 5
        assert orjson.loads(second[2])["bytes"] == len(CHECKOUT_BODY)
        for headers, _ in gate.upstream.requests:  # no peer header: not followed
            assert all(name != PEER_HEADER for name, _ in headers)
        writer.close()


async def test_the_apps_idle_connection_is_closed_and_the_next_request_opens_another(
    tmp_path: Path,
) -> None:
    async with gated(tmp_path) as gate:
        reader, writer = await gate.connect()
        writer.write(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await read_answer(reader))[0] == 200
        gate.state.publish(1, 1)
        # refusals for longer than the gate keeps the app's connection open (4 s)
        for _ in range(6):
            writer.write(post("/checkout", CHECKOUT_BODY))
            assert (await read_answer(reader))[0] == 503
            await asyncio.sleep(1.0)
        gate.state.publish(1, 0)
        writer.write(post("/checkout", CHECKOUT_BODY))
        assert (await read_answer(reader))[0] == 200
        writer.close()


async def test_on_sigterm_the_gate_finishes_the_answers_outstanding(tmp_path: Path) -> None:
    async with gated(tmp_path) as gate:
        reader, writer = await gate.connect()
        writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        await until_received(gate.upstream)
        gate.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.2)
        with pytest.raises(OSError):  # no new connections
            await gate.connect()
        assert gate.process.returncode is None
        gate.upstream.release.set()
        status, _, body = await read_answer(reader)
        assert status == 200 and orjson.loads(body)["path"] == "/slow"
        assert await asyncio.wait_for(gate.process.wait(), 10) == 0
        writer.close()
