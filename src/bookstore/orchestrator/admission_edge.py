"""POST /checkout's admission, before anything else, so that a refusal costs little.

A pure ASGI middleware, the app's outermost: beyond the admission limit
(`admission.AdaptiveLimit`) a POST /checkout is answered 503 BUSY with Retry-After
before the HTTP metrics, the edge and FastAPI see it: nothing is routed, resolved or
read (not even the body). Under overload most requests are refusals, each taking
event-loop time from the admitted checkouts, so the answer is built once, carries the
edge's CORS headers itself, and is counted here (an unavailable checkout, a 503 on
/checkout) with series looked up once. An admitted checkout goes on through the app;
its time, request to answer, is a sample of the limit when the route marks it
approved, and a 503 is a drop (`mark_answer`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from bookstore.orchestrator.admission import AdaptiveLimit
from bookstore.orchestrator.edge import CORS_HEADERS
from bookstore.orchestrator.errors import busy_answer
from bookstore.settings import Settings
from bookstore.telemetry import metrics

CHECKOUT_PATH = "/checkout"
_SCOPE_KEY = "bookstore.admission"


class _Admitted:
    __slots__ = ("approved", "failed")

    def __init__(self) -> None:
        self.approved = False
        self.failed = False


def mark_answer(scope: Scope, *, approved: bool, failed: bool) -> None:
    """What the admitted checkout of `scope` was answered: approved here and now (not
    replayed: a latency sample), or a 503 (a drop), or neither."""
    admitted = scope.get(_SCOPE_KEY)
    if isinstance(admitted, _Admitted):
        admitted.approved, admitted.failed = approved, failed


def limit_of(settings: Settings) -> AdaptiveLimit:
    """The admission limit `settings` describe."""
    return AdaptiveLimit(
        settings.max_in_flight,
        settings.admission_floor,
        settings.admission_tolerance,
        settings.admission_window_s,
        adaptive=settings.admission_adaptive,
    )


class AdmissionMiddleware:
    def __init__(
        self, app: ASGIApp, limit: AdaptiveLimit, changed: Callable[[], None] | None = None
    ) -> None:
        self.app = app
        self.limit = limit
        self._changed = changed or (lambda: None)  # the gate's copy of the limit
        status, headers, body = busy_answer()
        self._status = status
        self._headers = [(b"content-length", str(len(body)).encode()), *headers, *CORS_HEADERS]
        self._body = {"type": "http.response.body", "body": body}
        self._refused = metrics.CHECKOUTS.labels("unavailable")
        self._http_refused = metrics.HTTP_REQUESTS.labels("POST", CHECKOUT_PATH, str(status))
        self._http_duration = metrics.HTTP_DURATION.labels(CHECKOUT_PATH)
        metrics.ADMISSION_LIMIT.set_function(lambda: limit.limit)
        metrics.CHECKOUTS_IN_FLIGHT.set_function(lambda: limit.in_flight)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != CHECKOUT_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        ticket = self.limit.admit()
        if ticket is None:
            # A fresh message each time: a layer outside (tracing) may add headers to it.
            start = {
                "type": "http.response.start",
                "status": self._status,
                "headers": [*self._headers],
            }
            await send(start)
            await send(dict(self._body))
            took = time.perf_counter() - started
            self._refused.inc()
            metrics.CHECKOUT_DURATION.observe(took)
            self._http_refused.inc()
            self._http_duration.observe(took)
            return
        self._changed()
        admitted = _Admitted()
        scope[_SCOPE_KEY] = admitted
        try:
            await self.app(scope, receive, send)
        finally:
            now = time.perf_counter()
            latency_s = now - started if admitted.approved else None
            self.limit.done(ticket, now, latency_s, dropped=admitted.failed)
            self._changed()
