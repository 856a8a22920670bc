"""The app's side of the gate (`orchestrator/gate.py`).

`GateLink` publishes the admission limit and the checkouts in flight to the shared
state after every change, and folds the gate's refusals into the app's metrics
and into the limit (a refusal means the limit was reached) every `FOLD_S`, and
before every exposition of the metrics.
`PeerMiddleware` gives a request forwarded by the gate its client's address: the
app serves the gate on a Unix socket, which has none, and the gate names the client
in an `x-bookstore-peer` header carrying the shared token.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.types import ASGIApp, Receive, Scope, Send

from bookstore.orchestrator.admission import AdaptiveLimit
from bookstore.orchestrator.gate_state import PEER_HEADER, GateState
from bookstore.telemetry import metrics

FOLD_S = 0.05
CHECKOUT_PATH = "/checkout"


class GateLink:
    def __init__(self, state: GateState, limit: AdaptiveLimit) -> None:
        self.state = state
        self.limit = limit
        self._seen = (0, 0.0)
        self._task: asyncio.Task[None] | None = None
        self._refused = metrics.CHECKOUTS.labels("unavailable")
        self._http_refused = metrics.HTTP_REQUESTS.labels("POST", CHECKOUT_PATH, "503")
        self._http_duration = metrics.HTTP_DURATION.labels(CHECKOUT_PATH)
        self.publish()

    def publish(self) -> None:
        self.state.publish(self.limit.limit, self.limit.in_flight)

    def fold(self) -> int:
        """Count the refusals the gate made since the last fold; how many."""
        count, seconds = self.state.refusals()
        new, took = count - self._seen[0], seconds - self._seen[1]
        if new <= 0:
            return 0
        self._seen = (count, seconds)
        self.limit.note_refused()
        self._refused.inc(new)
        self._http_refused.inc(new)
        for _ in range(new):  # each at the mean: the gate keeps a count and a sum
            metrics.CHECKOUT_DURATION.observe(took / new)
            self._http_duration.observe(took / new)
        return new

    async def start(self) -> None:
        metrics.BEFORE_EXPOSITION.append(self.fold)
        self._task = asyncio.create_task(self._run(), name="gate-link")

    async def close(self) -> None:
        with contextlib.suppress(ValueError):
            metrics.BEFORE_EXPOSITION.remove(self.fold)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.fold()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FOLD_S)
            self.fold()


class PeerMiddleware:
    """The client's address from the gate's `x-bookstore-peer: TOKEN HOST PORT` on a
    request with none (the app's Unix socket); the header is removed either way."""

    def __init__(self, app: ASGIApp, token: bytes) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("client") is None:
            headers = scope["headers"]
            if headers and headers[0][0] == PEER_HEADER:
                token, _, peer = headers[0][1].partition(b" ")
                host, _, port = peer.partition(b" ")
                if token == self.token and port.isdigit():
                    scope["client"] = (host.decode("latin-1"), int(port))
            scope["headers"] = [h for h in headers if h[0] != PEER_HEADER]
        await self.app(scope, receive, send)
