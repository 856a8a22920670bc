"""The orchestrator's gate: a process of its own on the public port, so that a checkout
beyond the admission limit is refused at once however busy the app is.

Under overload the app's event loop is busy with the admitted checkouts, and a
refusal answered there waits its turn: measured at 500 clients, 6-15 ms at the
median, where a process with nothing else to do answered in under 1 ms. So
`serve orchestrator` binds the public port, serves the app on a private Unix socket,
and starts this process with the listening socket. Per client connection the gate:

- reads each request's head. A `POST /checkout` arriving while the connection has no
  answer outstanding, when as many checkouts are in flight as the limit admits, is
  answered here with the app's own 503 BUSY (Retry-After, CORS), and its body is read
  and dropped. The refusal is counted in the shared state, and the app folds it into
  its metrics. Checkouts in flight: those the gate forwarded and has not seen
  answered, or the app's own count if higher (`gate_state.GateState`, written by the
  app with its limit). The app's count alone lags: the checkouts on their way to it
  are not in it, and while it lags every checkout arriving would be let through, to
  be refused by the app, slowly.
- forwards everything else, byte for byte, on a connection of its own to the app,
  opened at the first request forwarded; only a header line is added after the
  request line: `x-bookstore-peer: TOKEN HOST PORT`, the client's address, which the
  app trusts with the shared token (a client cannot forge it).
- reads the app's answers only to know when each is complete, and forwards them as
  they come.
- gives up reading a connection whose requests it cannot follow exactly (chunked
  bodies, HEAD, `Expect`, upgrades, HTTP/1.0, a head past 64 KiB, anything
  malformed): from there on it forwards both ways untouched, and the app answers and
  refuses as it does without a gate.

The app stays the authority: it admits every checkout it is sent by its own limit
(`admission_edge.AdmissionMiddleware`), so a checkout the gate let through just as
the limit filled is refused there. The gate exits when the app does (the kernel
kills it: PR_SET_PDEATHSIG), and stops accepting on SIGTERM, finishing the answers
outstanding first.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
import time
from asyncio.subprocess import Process
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import httptools

from bookstore.orchestrator.gate_state import PEER_HEADER, GateState
from bookstore.parent_death import die_with

log = logging.getLogger("bookstore.gate")

MAX_HEAD_BYTES = 64 * 1024
STOP_GRACE_S = 5.0
KEEP_ALIVE_S = 5.0  # an idle client connection is closed after this (uvicorn's default)
# An idle connection to the app is closed after this, by the gate: the app's own
# keep-alive timeout, longer (APP_KEEP_ALIVE_S), never races a request forwarded.
APP_IDLE_S = 4.0
APP_KEEP_ALIVE_S = 60
_CHECKOUT = (b"POST", b"/checkout")


@dataclass(frozen=True, slots=True)
class _Head:
    """A request head the gate can follow: its method, path, body length, keep-alive."""

    method: bytes
    path: bytes
    length: int
    close: bool
    size: int


def parse_head(buffer: bytes | bytearray) -> _Head | bool | None:
    """The head at the start of `buffer`: a `_Head`, None if not all there yet, or
    False if the gate cannot follow it (the connection is then forwarded untouched)."""
    end = buffer.find(b"\r\n\r\n", 0, MAX_HEAD_BYTES + 4)
    if end < 0:
        return None if len(buffer) <= MAX_HEAD_BYTES else False
    lines = bytes(buffer[:end]).split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[2] != b"HTTP/1.1" or parts[0] == b"HEAD":
        return False
    length, close, framed = 0, False, False
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or name != name.strip():
            return False
        name, value = name.lower(), value.strip()
        if name == b"content-length":
            if not value.isdigit() or framed:
                return False
            length, framed = int(value), True
        elif name in (b"transfer-encoding", b"expect", b"upgrade"):
            return False
        elif name == b"connection":
            close = b"close" in value.lower()
    return _Head(parts[0], parts[1].split(b"?", 1)[0], length, close, end + 4)


class Gate:
    def __init__(self, state: GateState, upstream: str) -> None:
        self.state = state
        self.upstream = upstream
        self.answer = state.answer
        self.token = state.token
        self.clients: set[_Client] = set()
        # checkouts forwarded and not answered yet: those the app has admitted, and
        # those on their way to it, which it has not counted yet
        self.checkouts = 0


class _Client(asyncio.Protocol):
    """One client connection, and its own connection to the app."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.transport: asyncio.Transport | None = None
        self.peer = b"- 0"
        self.inbox = bytearray()  # client bytes not yet handled
        self.body_left = 0  # bytes of the current request's body still to come
        self.dropping = False  # the current body belongs to a refused checkout
        self.follow = True  # False: forward untouched from here on
        self.skip = 0  # untouched, but the rest of a refused body comes first: dropped
        # requests forwarded and not answered in full, oldest first: checkouts or not
        self.outstanding: deque[bool] = deque()
        self.app: _App | None = None
        self.to_app: list[bytes] = []  # while the app's connection opens
        self.closing = False
        self.active = time.monotonic()  # the last bytes from the client

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.peer = f"{peer[0]} {peer[1]}".encode()
        self.gate.clients.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gate.clients.discard(self)
        self.gate.checkouts -= sum(self.outstanding)  # never to be answered
        self.outstanding.clear()
        if self.app is not None and self.app.transport is not None:
            self.app.transport.close()

    def data_received(self, data: bytes) -> None:
        self.active = time.monotonic()
        if not self.follow:
            if self.skip:
                dropped = data[: self.skip]
                self.skip -= len(dropped)
                data = data[len(dropped) :]
            if data:
                self._send_app(data)
            return
        self.inbox += data
        self._handle()

    def pause_writing(self) -> None:
        if self.app is not None and self.app.transport is not None:
            self.app.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.app is not None and self.app.transport is not None:
            self.app.transport.resume_reading()

    # -- requests
    def _handle(self) -> None:
        while self.inbox and self.follow and not self.closing:
            if self.body_left:
                piece = bytes(self.inbox[: self.body_left])
                del self.inbox[: len(piece)]
                self.body_left -= len(piece)
                if not self.dropping:
                    self._send_app(piece)
                continue
            head = parse_head(self.inbox)
            if head is None:
                return
            if head is False:
                self._untouched()
                return
            assert isinstance(head, _Head)
            raw = bytes(self.inbox[: head.size])
            del self.inbox[: head.size]
            self.body_left = head.length
            # answers go back in order: none can go ahead of one outstanding
            checkout = (head.method, head.path) == _CHECKOUT
            ours = checkout and not self.outstanding
            self.dropping = ours and self.gate.state.full(self.gate.checkouts)
            if self.dropping:
                self._refuse(head)
            else:
                self._forward(raw, checkout)

    def _refuse(self, head: _Head) -> None:
        started = time.perf_counter()
        assert self.transport is not None
        self.transport.write(self.gate.answer)
        self.gate.state.refused(time.perf_counter() - started)
        if head.close:
            self.closing = True
            self.transport.close()

    def _forward(self, raw: bytes, checkout: bool) -> None:
        line_end = raw.index(b"\r\n") + 2
        self.outstanding.append(checkout)
        self.gate.checkouts += checkout
        self._send_app(
            raw[:line_end]
            + PEER_HEADER
            + b": "
            + self.gate.token
            + b" "
            + self.peer
            + b"\r\n"
            + raw[line_end:]
        )

    def _untouched(self) -> None:
        """Forward what is left, and all that comes, as it is (the app's own count of
        checkouts in flight covers those outstanding: the gate no longer sees answers)."""
        self.follow = False
        self.gate.checkouts -= sum(self.outstanding)
        self.outstanding.clear()
        if self.app is not None:
            self.app.follow = False
        rest, self.inbox = bytes(self.inbox), bytearray()
        if self.body_left and self.dropping:
            self.skip = max(0, self.body_left - len(rest))
            rest = rest[self.body_left :]
        self.body_left = 0
        if rest:
            self._send_app(rest)

    # -- the app's connection
    def _send_app(self, data: bytes) -> None:
        if self.app is None:
            self.app = _App(self)
            self.to_app.append(data)
            asyncio.get_running_loop().create_task(self._connect())
        elif self.app.transport is None:
            self.to_app.append(data)
        else:
            self.app.transport.write(data)
        self.app.active = time.monotonic()

    async def _connect(self) -> None:
        app, client = self.app, self.transport
        assert app is not None and client is not None
        try:
            await asyncio.get_running_loop().create_unix_connection(lambda: app, self.gate.upstream)
        except OSError as exc:
            log.warning("cannot reach the app at %s: %s", self.gate.upstream, exc)
            client.close()

    def answered(self) -> None:
        if self.outstanding:
            self.gate.checkouts -= self.outstanding.popleft()
        self.active = time.monotonic()
        if self.app is not None:
            self.app.active = self.active

    def close_idle_app(self, moment: float) -> None:
        """Close the connection to the app if nothing was sent or answered on it since
        `moment` (the next request forwarded opens another)."""
        app = self.app
        if (
            app is not None
            and app.transport is not None
            and self.follow
            and not self.outstanding
            and app.active < moment
        ):
            self.app = None
            app.transport.close()

    def idle_since(self, moment: float) -> bool:
        """Nothing heard and nothing outstanding since `moment` (never when untouched:
        the app's keep-alive timeout governs those)."""
        return self.follow and not self.outstanding and self.active < moment


class _App(asyncio.Protocol):
    """The gate's connection to the app for one client connection."""

    def __init__(self, client: _Client) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.follow = client.follow
        self.active = time.monotonic()
        self.parser = httptools.HttpResponseParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.client.transport is None or self.client.transport.is_closing():
            transport.close()
            return
        waiting, self.client.to_app = self.client.to_app, []
        transport.writelines(waiting)

    def connection_lost(self, exc: Exception | None) -> None:
        # Between requests the app's connection may close (the gate closes it when
        # idle): the next request forwarded opens another. Midway through a request or
        # an answer, or untouched, the client's connection ends with it.
        client = self.client
        if client.app is self:
            client.app = None
        midway = client.outstanding or (client.body_left and not client.dropping)
        midway = midway or not self.follow
        if midway and client.transport is not None:
            client.transport.close()

    def data_received(self, data: bytes) -> None:
        client = self.client.transport
        if client is None or client.is_closing():
            return
        client.write(data)
        if self.follow:
            try:
                self.parser.feed_data(data)
            except (httptools.HttpParserError, httptools.HttpParserUpgrade):
                self.follow = False
                self.client._untouched()

    def on_message_complete(self) -> None:  # httptools callback
        self.client.answered()

    def pause_writing(self) -> None:
        if self.client.transport is not None:
            self.client.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.client.transport is not None:
            self.client.transport.resume_reading()


async def serve(listening: socket.socket, state: GateState, upstream: str) -> None:
    gate = Gate(state, upstream)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Client(gate), sock=listening, backlog=2048)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sweeper = asyncio.create_task(_close_idle(gate))
    await stop.wait()
    sweeper.cancel()
    server.close()  # no new connections; the answers outstanding go on
    deadline = loop.time() + STOP_GRACE_S
    while any(c.outstanding for c in gate.clients) and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)  # answers end in protocol callbacks: polled, as seldom
    for client in list(gate.clients):
        if client.transport is not None:
            client.transport.close()


async def _close_idle(gate: Gate) -> None:
    while True:
        await asyncio.sleep(1.0)
        now = time.monotonic()
        for client in list(gate.clients):
            if client.idle_since(now - KEEP_ALIVE_S):
                if client.transport is not None:
                    client.transport.close()
            else:
                client.close_idle_app(now - APP_IDLE_S)


async def start(listening: socket.socket, upstream: str, state: GateState) -> Process:
    """The gate process, serving `listening` (which it inherits) in front of the app on
    the Unix socket `upstream`, with `state` shared; it dies with this process."""
    fd = listening.fileno()
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bookstore.orchestrator.gate",
        *("--fd", str(fd), "--upstream", upstream, "--state", str(state.path)),
        *("--parent", str(os.getpid())),
        pass_fds=(fd,),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the orchestrator's gate (started by it)")
    parser.add_argument("--fd", type=int, required=True, help="the listening socket")
    parser.add_argument("--upstream", required=True, help="the app's Unix socket")
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--parent", type=int, required=True, help="the app's pid")
    args = parser.parse_args(argv)
    die_with(args.parent)  # after exec: the app has threads, no code may run before it
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.WARNING,
        format="%(asctime)s %(levelname)-5s orchestrator %(name)s: %(message)s",
    )
    state = GateState(args.state)
    listening = socket.socket(fileno=args.fd)
    asyncio.run(serve(listening, state, args.upstream))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
