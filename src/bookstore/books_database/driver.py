"""The adapter around one `Replica`: time, disk and network.

One task runs the replica. Each turn it takes every input that arrived
(client requests, peer messages), lets the replica tick, writes the merged
Output's durable part in one transaction (group commit: one fsync for the
whole turn), and only then sends the messages and answers the clients.
Peer messages leave through one `PeerLink` per peer, which sends whatever
has accumulated as one batch while the previous batch is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence

import grpc

from bookstore import grpcutil
from bookstore.books_database import wire
from bookstore.books_database.messages import Answer, Message, Output
from bookstore.books_database.replication import Replica
from bookstore.books_database.stock import Op
from bookstore.books_database.storage import Storage, StorageFailure, snapshot
from bookstore.pb import books_database_pb2 as pb
from bookstore.pb import books_database_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

PEER_TIMEOUT_S = 0.5  # one Deliver call; a lost batch is the protocol's business
PEER_QUEUE_MAX = 20_000  # messages waiting for one peer; older ones are dropped beyond it
PEER_BATCH_MAX = 2_000


class PeerLink:
    """Batches and sends protocol messages to one peer, one call in flight."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._queue: deque[pb.PeerMessage] = deque(maxlen=PEER_QUEUE_MAX)
        self._ready = asyncio.Event()
        self._channel = grpcutil.channel(address)
        self._stub = pb_grpc.BooksDatabaseStub(self._channel)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def send(self, msg: Message) -> None:
        self._queue.append(wire.message_pb(msg))
        self._ready.set()

    async def _run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._queue:
                count = min(len(self._queue), PEER_BATCH_MAX)
                batch = pb.PeerBatch(messages=[self._queue.popleft() for _ in range(count)])
                try:
                    await self._stub.Deliver(batch, timeout=PEER_TIMEOUT_S)
                except grpc.RpcError:
                    await asyncio.sleep(0.02)  # peer down: lose the batch, back off a little

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._channel.close()


Input = Callable[[Replica, float], Output]


def _on_message(msg: Message, replica: Replica, now: float) -> Output:
    return replica.on_message(msg, now)


class Driver:
    def __init__(
        self,
        replica: Replica,
        storage: Storage,
        peer_addresses: Mapping[int, str],
        tick_s: float,
        on_caught_up: Callable[[], object] | None = None,
    ) -> None:
        self.replica = replica
        self.storage = storage
        self.peers = {i: PeerLink(a) for i, a in peer_addresses.items() if i != replica.my_id}
        self.tick_s = tick_s
        self.on_caught_up = on_caught_up
        self._inputs: list[Input] = []
        self._wake = asyncio.Event()
        self._futures: dict[int, asyncio.Future[Answer]] = {}
        self._tickets = itertools.count(1)
        self._task: asyncio.Task[None] | None = None
        self.failed: BaseException | None = None
        self._saved_applied = replica.machine.applied

    def start(self) -> asyncio.Task[None]:
        """Start the replica; the task ends only if storage fails (StorageFailure)."""
        for link in self.peers.values():
            link.start()
        self._task = asyncio.create_task(self._run())
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, StorageFailure):
                await self._task
        for link in self.peers.values():
            await link.close()
        for future in self._futures.values():
            future.cancel()

    def deliver(self, messages: list[Message]) -> None:
        self._inputs.extend(functools.partial(_on_message, m) for m in messages)
        self._wake.set()

    async def submit_many(self, ops: Sequence[Op]) -> list[Answer]:
        """The ops as one input of one turn: one append, one round, one fsync."""
        if self.failed is not None:
            raise StorageFailure(str(self.failed))
        loop = asyncio.get_running_loop()
        tickets = [next(self._tickets) for _ in ops]
        futures: list[asyncio.Future[Answer]] = [loop.create_future() for _ in ops]
        self._futures.update(zip(tickets, futures, strict=True))
        writes = tuple(zip(tickets, ops, strict=True))
        self._inputs.append(lambda r, now: r.submit_many(writes, now))
        self._wake.set()
        try:
            return list(await asyncio.gather(*futures))
        finally:
            for ticket in tickets:
                self._futures.pop(ticket, None)

    async def read(self, book_ids: tuple[str, ...]) -> Answer:
        return await self._request(lambda r, now, t: r.read(t, book_ids, now))

    async def _request(self, call: Callable[[Replica, float, int], Output]) -> Answer:
        if self.failed is not None:
            raise StorageFailure(str(self.failed))
        ticket = next(self._tickets)
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._futures[ticket] = future
        self._inputs.append(lambda r, now: call(r, now, ticket))
        self._wake.set()
        try:
            return await future
        finally:
            self._futures.pop(ticket, None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.tick_s)
            self._wake.clear()
            inputs, self._inputs = self._inputs, []
            now = loop.time()
            out = Output()
            for take in inputs:
                out.merge(take(self.replica, now))
            out.merge(self.replica.on_tick(now))
            try:
                await self._persist(out)
            except StorageFailure as exc:
                self.failed = exc
                log.critical("books database storage failed, stopping: %s", exc)
                for future in self._futures.values():
                    future.cancel()
                raise
            self._emit(out)

    async def _persist(self, out: Output) -> None:
        if out.durable_work or out.applied != self._saved_applied:
            await asyncio.to_thread(self.storage.write, snapshot(out, self.replica.machine))
            self._saved_applied = out.applied

    def _emit(self, out: Output) -> None:
        for note in out.notes:
            log.info("%s", note)
        for o in out.messages:
            link = self.peers.get(o.to)
            if link is not None:
                link.send(o.message)
        for answer in out.answers:
            future = self._futures.get(answer.ticket)
            if future is not None and not future.done():
                future.set_result(answer)
        if self.replica.caught_up and self.on_caught_up is not None:
            callback, self.on_caught_up = self.on_caught_up, None
            callback()
