"""POST /checkout's admission, before anything else (`admission.Admission`'s I/O).

A pure ASGI middleware, the app's outermost. A POST /checkout takes a slot at once,
or waits for one (an asyncio future per waiter, resolved when a slot is released), or
is answered 503 BUSY with Retry-After: when its wait reaches its deadline, or the
queue is full. A waiting checkout's body is not read until it is admitted: a waiter
costs a future and an open connection. The refusal's bytes are built once and carry
the edge's CORS headers; it counts as an `unavailable` checkout, a 503 on /checkout.
"""

from __future__ import annotations

import asyncio
import time

from starlette.types import ASGIApp, Receive, Scope, Send

from bookstore.orchestrator.admission import Admission
from bookstore.orchestrator.edge import CORS_HEADERS
from bookstore.orchestrator.errors import busy_answer
from bookstore.settings import Settings
from bookstore.telemetry import metrics

CHECKOUT_PATH = "/checkout"


def admission_of(settings: Settings) -> Admission:
    """The admission `settings` describe."""
    return Admission(
        settings.max_in_flight,
        settings.admission_wait_s,
        settings.admission_interval_s,
        settings.admission_queue,
        settings.min_in_flight,
        settings.admission_target_s,
    )


class AdmissionMiddleware:
    def __init__(self, app: ASGIApp, admission: Admission) -> None:
        self.app = app
        self.admission = admission
        self._waiters: dict[int, asyncio.Future[bool]] = {}
        status, headers, body = busy_answer()
        self._status = status
        self._headers = [(b"content-length", str(len(body)).encode()), *headers, *CORS_HEADERS]
        self._body = {"type": "http.response.body", "body": body}
        self._refused = metrics.CHECKOUTS.labels("unavailable")
        self._refused_duration = metrics.CHECKOUT_DURATION.labels("unavailable")
        self._http_refused = metrics.HTTP_REQUESTS.labels("POST", CHECKOUT_PATH, str(status))
        self._http_duration = metrics.HTTP_DURATION.labels(CHECKOUT_PATH)
        metrics.CHECKOUTS_IN_FLIGHT.set_function(lambda: admission.in_flight)
        metrics.CHECKOUTS_WAITING.set_function(lambda: admission.waiting)
        metrics.ADMISSION_LIMIT.set_function(lambda: admission.slots(time.perf_counter()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != CHECKOUT_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        arrival = self.admission.arrive(started)
        for token in arrival.refused:  # waiters refused to make room (an overload)
            self._waiters.pop(token).set_result(False)
        if not arrival.admitted and not await self._waited(arrival.token):
            await self._refuse(send, started)
            return
        # The route times the checkout from here: its wait for a slot is the customer's too.
        scope.setdefault("state", {})["arrived"] = started
        try:
            await self.app(scope, receive, send)
        finally:
            # One admitted at once tells the admission how long a checkout takes unqueued.
            self._release(started if arrival.admitted else None)

    async def _waited(self, token: int | None) -> bool:
        """Whether waiter `token` (None: refused at once) was given a slot in time."""
        if token is None:
            return False
        slot: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters[token] = slot
        try:
            await asyncio.wait({slot}, timeout=self.admission.max_wait_s)
        except asyncio.CancelledError:  # the server is stopping
            self._give_up(token, slot)
            raise
        if not slot.done():  # its deadline passed: it could not be answered in time
            self._give_up(token, slot)
            return False
        return slot.result()

    def _give_up(self, token: int, slot: asyncio.Future[bool]) -> None:
        """Waiter `token` leaves; a slot it was given meanwhile goes to the next."""
        if not slot.done():
            del self._waiters[token]
            self.admission.cancel(token)
        elif slot.result():
            self._release()

    def _release(self, arrived: float | None = None) -> None:
        for token in self.admission.release(time.perf_counter(), arrived):
            self._waiters.pop(token).set_result(True)

    async def _refuse(self, send: Send, started: float) -> None:
        # A fresh message each time: a layer outside (tracing) may add headers to it.
        start = {"type": "http.response.start", "status": self._status, "headers": [*self._headers]}
        await send(start)
        await send(dict(self._body))
        took = time.perf_counter() - started
        self._refused.inc()
        self._refused_duration.observe(took)
        self._http_refused.inc()
        self._http_duration.observe(took)
