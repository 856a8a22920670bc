"""Batching outboxes and the long-lived streams to the checkout services (`StreamLink`:
the peers' `PeerLink` here, the orchestrator's `ServiceSession`).

A sender appends messages to an `Outbox` (no await, no copy); one writer task
per stream takes everything accumulated since its last send and sends it as
one batch, so under load one gRPC message carries many updates.

A batch never exceeds `BATCH_BYTES` (it is split by size, so no batch can reach
gRPC's message limit and break the stream for every order in it), and a message
larger than `MAX_ITEM_BYTES` on its own is refused before it is sent: it is logged,
counted in `refused` and dropped, so only its own order fails (the input limits of
the HTTP edge keep every real message far below it).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Generic, Protocol, TypeVar

import grpc

from bookstore import grpcutil
from bookstore.backoff import Backoff, cancelled, reconnect
from bookstore.grpcutil import describe
from bookstore.pb import checkout_pb2, checkout_pb2_grpc

log = logging.getLogger(__name__)


class Message(Protocol):
    def ByteSize(self) -> int: ...


T = TypeVar("T", bound=Message)

MAX_PENDING = 100_000  # messages held for a stream that is down; older ones are dropped
BATCH_BYTES = 1024 * 1024  # a batch is split before it grows past this
# One message alone may not come near gRPC's limit (room left for the batch's framing).
MAX_ITEM_BYTES = grpcutil.MAX_MESSAGE_BYTES - 64 * 1024
BACKOFF_MIN_S = 0.05
BACKOFF_MAX_S = 1.0


class Outbox(Generic[T]):
    """Messages waiting for a stream's writer task."""

    def __init__(
        self,
        limit: int = MAX_PENDING,
        *,
        batch_bytes: int = BATCH_BYTES,
        max_item_bytes: int = MAX_ITEM_BYTES,
    ) -> None:
        self._items: list[T] = []
        self._wakeup = asyncio.Event()
        self._limit = limit
        self._batch_bytes = batch_bytes
        self._max_item_bytes = max_item_bytes
        self.closed = False
        self.dropped = 0
        self.refused = 0

    def put(self, item: T) -> None:
        if self.closed:
            self.dropped += 1
            return
        self._items.append(item)
        if len(self._items) > self._limit:
            del self._items[0]
            self.dropped += 1
        if not self._wakeup.is_set():
            self._wakeup.set()

    def wake(self) -> None:
        self._wakeup.set()

    def close(self) -> None:
        self.closed = True
        self._wakeup.set()

    async def take(self) -> list[T]:
        """What is pending, up to `batch_bytes` (waits for a message); [] once closed."""
        while not self._items:
            if self.closed:
                return []
            self._wakeup.clear()
            await self._wakeup.wait()
            if self.closed and not self._items:
                return []
            if not self._items:
                return []  # woken for another reason (e.g. the stream broke)
        return self._batch()

    def _batch(self) -> list[T]:
        batch: list[T] = []
        size = taken = 0
        for item in self._items:
            item_size = item.ByteSize()
            if item_size > self._max_item_bytes:
                taken += 1
                self.refused += 1
                log.error("a message of %d bytes refused: over the stream's limit", item_size)
                continue
            if batch and size + item_size > self._batch_bytes:
                break
            batch.append(item)
            size += item_size
            taken += 1
        del self._items[:taken]
        if self._items:
            self._wakeup.set()  # the rest goes in the next batch
        return batch

    def clear(self) -> None:
        self._items.clear()

    def requeue(self, items: list[T]) -> None:
        """Put back, first in line, a batch that could not be sent."""
        if items and not self.closed:
            self._items[:0] = items
            self._wakeup.set()


class StreamLink(Generic[T]):
    """A long-lived stream to one checkout service, opened again with a short back-off
    until the link is closed; `outbox` holds what waits to be sent. A subclass gives
    `_session`: one stream until it breaks, True when it was up."""

    task_name = "link"

    def __init__(self, service: str, address: str) -> None:
        self.service = service
        self.address = address
        self.outbox: Outbox[T] = Outbox()
        self.channel = grpcutil.channel(address)
        self.stub = checkout_pb2_grpc.CheckoutParticipantStub(self.channel)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"{self.task_name}-{self.service}")

    def send(self, message: T) -> None:
        self.outbox.put(message)

    async def close(self) -> None:
        self.outbox.close()
        await cancelled(self._task)
        await self.channel.close()

    async def _run(self) -> None:
        backoff = Backoff(BACKOFF_MIN_S, BACKOFF_MAX_S)
        await reconnect(self._session, backoff, stopped=lambda: self.outbox.closed)

    async def _session(self) -> bool:
        raise NotImplementedError


class PeerLink(StreamLink[checkout_pb2.ClockUpdate]):
    """One long-lived client-streaming `Exchange` call to a peer service.

    Reconnects with a short back-off when the peer is down or restarts; the
    batch whose write failed when a stream broke is sent again first on the next
    stream (a clock update delivered twice changes nothing: merging is idempotent
    and an event starts once).
    """

    task_name = "peer-link"

    def __init__(self, service: str, address: str) -> None:
        super().__init__(service, address)
        self._unsent: list[checkout_pb2.ClockUpdate] = []
        self.connected = False

    async def _session(self) -> bool:
        """One Exchange stream until it ends; True when it ended cleanly (on close)."""
        call = self.stub.Exchange()
        call.add_done_callback(lambda _call: self.outbox.wake())
        try:
            await self._pump(call)
            return True
        except (grpc.RpcError, asyncio.InvalidStateError) as exc:
            if self.connected and not self.outbox.closed:
                log.warning("link to %s (%s) broke: %s", self.service, self.address, describe(exc))
            self.connected = False
            return False
        finally:
            if not call.done():
                call.cancel()

    async def _pump(self, call: grpc.aio.StreamUnaryCall[checkout_pb2.PeerBatch, object]) -> None:
        await call.wait_for_connection()
        if not self.connected:
            log.info("linked to %s at %s", self.service, self.address)
        self.connected = True
        self.outbox.requeue(self._unsent)
        self._unsent = []
        while True:
            if call.done():
                await call  # raises the call's error
                raise grpc.aio.AioRpcError(
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.aio.Metadata(),
                    grpc.aio.Metadata(),
                    details="peer ended the stream",
                )
            updates = await self.outbox.take()
            if self.outbox.closed:
                await call.done_writing()
                return
            if updates:
                try:
                    await call.write(checkout_pb2.PeerBatch(updates=updates))
                except BaseException:
                    self._unsent = updates  # sent again first on the next stream
                    raise
