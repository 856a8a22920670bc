"""The orchestrator's long-lived `Session` stream to one checkout service.

Messages are queued in an outbox and sent in batches by one writer task; a
reader task hands every received `ParticipantMessage` to a callback. The link
reports itself up when the stream opens; when the stream breaks it reports itself
down (so orders in flight fail at once) and reconnects with a short back-off.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

import grpc

from bookstore.choreography.links import StreamLink
from bookstore.grpcutil import describe
from bookstore.pb import checkout_pb2, common_pb2

log = logging.getLogger(__name__)

OnMessage = Callable[[str, checkout_pb2.ParticipantMessage], None]
OnLink = Callable[[str], None]  # the service whose stream came up or went down

# grpc.aio.StreamStreamCall[OrchestratorBatch, ParticipantBatch] (grpc ships no type hints)
SessionCall: TypeAlias = Any


class Link(Protocol):
    """What the pipeline uses of a session (a test passes a fake)."""

    up: bool
    became_up: asyncio.Event

    def start(self) -> None: ...
    def send(self, message: checkout_pb2.OrchestratorMessage) -> None: ...
    async def close(self) -> None: ...
    async def stats(self, timeout: float) -> tuple[int, int] | None: ...


@dataclass(frozen=True)
class LinkEvents:
    """Where a link reports what arrives and when its stream comes up or goes down."""

    on_message: OnMessage
    on_up: OnLink
    on_down: OnLink


# (service, address, events, connect timeout) -> a started-on-demand link
LinkFactory = Callable[[str, str, LinkEvents, float], Link]


class ServiceSession(StreamLink[checkout_pb2.OrchestratorMessage]):
    task_name = "session"

    def __init__(
        self,
        service: str,
        address: str,
        events: LinkEvents,
        connect_timeout_s: float,
    ) -> None:
        super().__init__(service, address)
        self._events = events
        self._connect_timeout_s = connect_timeout_s
        self.up = False
        self.became_up = asyncio.Event()

    async def stats(self, timeout: float) -> tuple[int, int] | None:
        """The service's (pid, cached orders), or None if it does not answer."""
        try:
            reply = await self.stub.Stats(common_pb2.Empty(), timeout=timeout)
        except grpc.RpcError:
            return None
        return int(reply.pid), int(reply.cached_orders)

    async def _session(self) -> bool:
        """One Session stream until it breaks; True when it was up (a fresh outage follows)."""
        call: SessionCall = self.stub.Session()
        call.add_done_callback(lambda _call: self.outbox.wake())
        reader: asyncio.Task[None] | None = None
        was_up = False
        try:
            await asyncio.wait_for(call.initial_metadata(), self._connect_timeout_s)
            if call.done():
                await call.read()  # raises the call's error
                raise ConnectionError("stream ended")
            self.outbox.clear()  # whatever waited belongs to orders that already failed
            self.up = was_up = True
            self.became_up.set()
            log.info("session with %s at %s open", self.service, self.address)
            self._events.on_up(self.service)
            reader = asyncio.create_task(self._read(call))
            await self._write(call)
        except (grpc.RpcError, TimeoutError, ConnectionError, asyncio.InvalidStateError) as exc:
            if was_up and not self.outbox.closed:
                log.warning("session with %s broke: %s", self.service, describe(exc))
        finally:
            self.up = False
            self.became_up.clear()
            if not call.done():
                call.cancel()
            if reader is not None:
                reader.cancel()
            if was_up:
                self._events.on_down(self.service)
        return was_up

    async def _write(self, call: SessionCall) -> None:
        while not call.done():
            messages = await self.outbox.take()
            if self.outbox.closed:
                return
            if messages and not call.done():
                await call.write(checkout_pb2.OrchestratorBatch(messages=messages))

    async def _read(self, call: SessionCall) -> None:
        try:
            while True:
                batch = await call.read()
                if batch is grpc.aio.EOF:
                    break
                assert isinstance(batch, checkout_pb2.ParticipantBatch)
                for message in batch.messages:
                    self._events.on_message(self.service, message)
        except grpc.RpcError:
            pass
        finally:
            self.outbox.wake()
            if not call.done():
                call.cancel()
