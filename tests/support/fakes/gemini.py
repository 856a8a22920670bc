"""A fake Gemini server that speaks the real `generateContent` REST API.

It listens on 127.0.0.1 (a free port), runs its own event loop in a thread
(so it serves the test process and the services a test started alike), and
answers `POST /{version}/models/{model}:generateContent` the way the real API
does: a `candidates[0].content.parts[0].text` body. Every request body is
recorded. Each test scripts what it answers:

    fake.always(Reply.json({"fraud": False, "score": 0.1, "reason": "ok"}))
    fake.then(Reply.status(500), Reply.hang())   # one-shot replies, in order
    fake.respond_with(lambda request: ...)       # decide per request

Replies: JSON text, any text (prose, fenced JSON), an HTTP status with an
error body, a hang (past any client deadline), or a closed connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ports import free_ports

Kind = Literal["text", "status", "hang", "close"]


@dataclass(frozen=True)
class Reply:
    kind: Kind
    body: str = ""
    status_code: int = 200
    delay_s: float = 0.0  # wait this long before answering (a slow model)

    def after(self, delay_s: float) -> Reply:
        """The same reply, sent `delay_s` seconds late."""
        return replace(self, delay_s=delay_s)

    @staticmethod
    def json(payload: Any) -> Reply:
        """The model answers with this JSON document as its text."""
        return Reply("text", json.dumps(payload))

    @staticmethod
    def text(text: str) -> Reply:
        """The model answers with any text: prose, fenced JSON..."""
        return Reply("text", text)

    @staticmethod
    def status(code: int, message: str = "fake failure") -> Reply:
        return Reply("status", message, code)

    @staticmethod
    def hang() -> Reply:
        """Accept the request and never answer (until the server stops)."""
        return Reply("hang")

    @staticmethod
    def close() -> Reply:
        """Read the request, then close the connection without a response."""
        return Reply("close")


@dataclass
class Request:
    """One request the fake received."""

    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def model(self) -> str:
        return self.path.split("/models/", 1)[-1].split(":", 1)[0]

    @property
    def api_key(self) -> str:
        return self.headers.get("x-goog-api-key", "")

    def text(self) -> str:
        """Every text the request carried: system instruction and contents."""
        parts: list[str] = []
        system = self.body.get("systemInstruction") or self.body.get("system_instruction") or {}
        for part in system.get("parts", []):
            parts.append(str(part.get("text", "")))
        for content in self.body.get("contents", []):
            for part in content.get("parts", []):
                parts.append(str(part.get("text", "")))
        return "\n".join(parts)

    def schema_keys(self) -> set[str]:
        """Property names of the response schema the request asked for."""
        config = self.body.get("generationConfig", {})
        schema = config.get("responseSchema") or config.get("responseJsonSchema") or {}
        return set(schema.get("properties", {}))


Responder = Callable[[Request], Reply]


def candidate_body(text: str) -> dict[str, Any]:
    """A `GenerateContentResponse` whose only candidate says `text`."""
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": text}]},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5},
        "modelVersion": "fake",
    }


def _status_body(code: int, message: str) -> dict[str, Any]:
    status = {429: "RESOURCE_EXHAUSTED", 400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED"}
    return {"error": {"code": code, "message": message, "status": status.get(code, "INTERNAL")}}


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests"}


class FakeGemini:
    """Start with `start()` (or use as a context manager); stop with `stop()`."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._default: Responder = lambda _request: Reply.status(503, "no reply scripted")
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._stopping: asyncio.Event | None = None
        self.port = 0

    # -- scripting ---------------------------------------------------------

    def always(self, reply: Reply) -> None:
        """Answer every request (after any one-shot replies) with `reply`."""
        with self._lock:
            self._default = lambda _request: reply

    def respond_with(self, responder: Responder) -> None:
        with self._lock:
            self._default = responder

    def then(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, one each, in order."""
        with self._lock:
            self._queue.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._queue.clear()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> FakeGemini:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(5) or not self.port:
            raise RuntimeError("the fake Gemini server did not start")
        return self

    def stop(self) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> FakeGemini:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main(ready))
        finally:
            loop.close()

    async def _main(self, ready: threading.Event) -> None:
        self._stopping = asyncio.Event()
        handlers: set[asyncio.Task[None]] = set()

        def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.ensure_future(self._connection(reader, writer))
            handlers.add(task)
            task.add_done_callback(handlers.discard)

        self._server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        sock: socket.socket = self._server.sockets[0]
        self.port = int(sock.getsockname()[1])
        ready.set()
        await self._stopping.wait()
        self._server.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await self._server.wait_closed()

    # -- HTTP --------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await self._read_request(reader)
                if request is None:
                    break
                reply = self._reply_for(request)
                if reply.kind == "hang":
                    assert self._stopping is not None
                    await self._stopping.wait()
                    break
                if reply.delay_s > 0:
                    await asyncio.sleep(reply.delay_s)
                if reply.kind == "close":
                    break
                await self._write(writer, request, reply)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read_request(self, reader: asyncio.StreamReader) -> Request | None:
        line = await reader.readline()
        if not line:
            return None
        method, path, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while True:
            header = (await reader.readline()).decode("latin-1").strip()
            if not header:
                break
            name, _, value = header.partition(":")
            headers[name.strip().lower()] = value.strip()
        raw = await reader.readexactly(int(headers.get("content-length", "0")))
        request = Request(method=method, path=path.split("?", 1)[0], headers=headers, raw=raw)
        with contextlib.suppress(ValueError):
            parsed = json.loads(raw or b"{}")
            if isinstance(parsed, dict):
                request.body = parsed
        with self._lock:
            self.requests.append(request)
        return request

    def _reply_for(self, request: Request) -> Reply:
        if request.method != "POST" or not request.path.endswith(":generateContent"):
            return Reply.status(404, f"no route {request.method} {request.path}")
        if not request.api_key:
            return Reply.status(403, "API key missing")
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            responder = self._default
        return responder(request)

    async def _write(self, writer: asyncio.StreamWriter, request: Request, reply: Reply) -> None:
        if reply.kind == "status":
            code = reply.status_code
            payload = _status_body(code, reply.body)
        else:
            code = 200
            payload = candidate_body(reply.body)
        data = json.dumps(payload).encode()
        reason = _REASONS.get(code, "Error")
        head = (
            f"HTTP/1.1 {code} {reason}\r\n"
            "Content-Type: application/json; charset=UTF-8\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        )
        writer.write(head.encode("latin-1") + data)
        await writer.drain()


def closed_port_url() -> str:
    """A base URL on 127.0.0.1 where nothing listens (connection refused)."""
    [port] = free_ports(1)
    return f"http://127.0.0.1:{port}"
