"""Concurrent calls to one service, sent as batches: one RPC carries many requests.

A gRPC call costs a Python process far more CPU than the work most of ours do, and
the leader executor runs many orders at once: their prepares and commits to the
same participant can share a call. `Coalescer.call(request)` waits for the reply
to `request`; the requests of callers that arrive while `max_in_flight` batches are
already on the wire wait together and go as the next batch (at most `max_batch`
requests). There is no timer: a lone call is sent at once, so batching costs an
idle system no latency, and under load the batches grow by themselves ("smart
batching", as in group commit). Batches are pipelined: up to `max_in_flight` of
them are on the wire at the same time.

`send(requests)` makes the batch call and returns one outcome per request, in
order: a reply, or an exception for that request alone. An exception raised by
`send` itself fails every request of the batch. Each batch's size is observed in
`bookstore_batched_requests{service}`.

With tracing on, a batch belongs to no single checkout: its call carries the span
context of every caller (`tracing.call_metadata`), and the server's span for it is the
root of a trace of its own, linked to each of them (the OpenTelemetry pattern for
batches), so each order's trace still leads to the call that did its work. The batch
itself starts no span: one span per batch, on the side that does the work.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from bookstore.telemetry import metrics, tracing

Req = TypeVar("Req")
Rep = TypeVar("Rep")

Send = Callable[[Sequence[Req]], Awaitable[Sequence[Rep | BaseException]]]


@dataclass
class _Waiting(Generic[Req, Rep]):
    request: Req
    reply: asyncio.Future[Rep]
    caller: str = ""  # the caller's span context (W3C traceparent), "" without one


class Coalescer(Generic[Req, Rep]):
    """Concurrent `call`s become pipelined batches of `send`."""

    def __init__(
        self,
        send: Send[Req, Rep],
        name: str,
        *,
        service: str,
        max_batch: int = 64,
        max_in_flight: int = 2,
    ) -> None:
        """`name`: the batch call's, in errors; `service`: one of `metrics.BATCHED_SERVICES`."""
        if max_batch < 1 or max_in_flight < 1:
            raise ValueError("max_batch and max_in_flight must be at least 1")
        if service not in metrics.BATCHED_SERVICES:
            raise ValueError(f"{service!r} is not one of {metrics.BATCHED_SERVICES}")
        self._send = send
        self.name = name
        self._sizes = metrics.BATCH_SIZE.labels(service)
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self._waiting: deque[_Waiting[Req, Rep]] = deque()
        self._in_flight: set[asyncio.Task[None]] = set()
        self.batches = 0  # batches sent, for tests and benchmarks
        self.requests = 0  # requests sent in them

    async def call(self, request: Req) -> Rep:
        reply: asyncio.Future[Rep] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(request, reply, tracing.caller_context()))
        self._start_batches()
        return await reply

    def _start_batches(self) -> None:
        while self._waiting and len(self._in_flight) < self.max_in_flight:
            batch: list[_Waiting[Req, Rep]] = []
            while self._waiting and len(batch) < self.max_batch:
                waiting = self._waiting.popleft()
                if not waiting.reply.done():  # its caller gave up (cancelled) before it left
                    batch.append(waiting)
            if not batch:
                return
            # A fresh context: the batch's call joins none of its callers' traces.
            task = asyncio.get_running_loop().create_task(
                self._run(batch), context=contextvars.Context()
            )
            self._in_flight.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._start_batches()

    async def _run(self, batch: list[_Waiting[Req, Rep]]) -> None:
        self.batches += 1
        self.requests += len(batch)
        self._sizes.observe(len(batch))
        requests = [waiting.request for waiting in batch]
        try:
            if tracing.enabled():  # this task's own context: its call's metadata
                tracing.carry_batch([waiting.caller for waiting in batch], len(batch))
            outcomes = await self._send(requests)
            if len(outcomes) != len(batch):
                raise RuntimeError(
                    f"{self.name}: {len(outcomes)} outcomes for a batch of {len(batch)}"
                )
        except Exception as exc:  # the whole batch failed: every caller hears why
            for waiting in batch:
                if not waiting.reply.done():
                    waiting.reply.set_exception(exc)
            return
        except asyncio.CancelledError:
            for waiting in batch:
                waiting.reply.cancel()
            raise
        for waiting, outcome in zip(batch, outcomes, strict=True):
            if waiting.reply.done():
                continue
            if isinstance(outcome, BaseException):
                waiting.reply.set_exception(outcome)
            else:
                waiting.reply.set_result(outcome)

    async def close(self) -> None:
        """Cancel the batches on the wire (their callers see CancelledError)."""
        for task in list(self._in_flight):
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
