"""The adapter around one `Replica`: time, disk and network.

The replica's inputs (client requests, peer messages, and a tick every
`tick_s`) go through a group commit (`bookstore.group_commit`) whose commit
is a turn: it feeds the replica every input that arrived while the previous
turn was on its way to disk, lets it tick, sends the eager messages (the
primary's Appends) and gives the answers, writes the merged Output's durable
part in one transaction (one fsync for the whole turn), and only then sends
the other messages (replication rule 2) and tells the replica its writes are
done (`on_persisted`: the primary counts itself, and may commit and answer
at once; the stock that applies is written with the next turn). A turn that
fails stops the replica. Peer messages leave through one `PeerLink` per
peer, which sends whatever has accumulated as one batch while the previous
batch is in flight. Each link also watches its connection, at no cost while
it is up: one that closes and is refused when opened again (a killed peer)
is told to the replica (`on_peer_lost`), so a backup stands at once.
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
from bookstore.books_database.messages import Answer, Message, Outgoing, Output
from bookstore.books_database.replication import Replica
from bookstore.books_database.stock import Op
from bookstore.books_database.storage import Storage, StorageFailure, snapshot
from bookstore.group_commit import GroupCommit
from bookstore.pb import books_database_pb2 as pb
from bookstore.pb import books_database_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

PEER_TIMEOUT_S = 0.5  # one Deliver call; a lost batch is the protocol's business
PEER_QUEUE_MAX = 20_000  # messages waiting for one peer; older ones are dropped beyond it
PEER_BATCH_MAX = 2_000
PEER_BATCH_BYTES = 2 * 1024 * 1024  # under grpcutil's message limit; a snapshot goes alone
TURN_MAX_INPUTS = 10_000  # inputs of one turn: a flood is taken in several turns
PEER_GONE_S = 0.3  # a connection that closed and does not open again in this: peer gone


class PeerLink:
    """Batches and sends protocol messages to one peer, one call in flight."""

    def __init__(self, address: str, on_lost: Callable[[], object] = lambda: None) -> None:
        self.address = address
        self.on_lost = on_lost
        self._queue: deque[pb.PeerMessage] = deque(maxlen=PEER_QUEUE_MAX)
        self._ready = asyncio.Event()
        self._channel = grpcutil.channel(address)
        self._stub = pb_grpc.BooksDatabaseStub(self._channel)
        self._task: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        self._watch = asyncio.create_task(self._watch_connection())

    async def _watch_connection(self) -> None:
        ready = grpc.ChannelConnectivity.READY
        while True:
            await self._channel.channel_ready()
            await self._channel.wait_for_state_change(ready)
            try:
                again = await asyncio.wait_for(grpcutil.reconnects(self._channel), PEER_GONE_S)
            except TimeoutError:
                again = False
            if not again:
                self.on_lost()

    def send(self, msg: Message) -> None:
        self._queue.append(wire.message_pb(msg))
        self._ready.set()

    async def _run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._queue:
                batch = self._batch()
                try:
                    await self._stub.Deliver(batch, timeout=PEER_TIMEOUT_S)
                except grpc.RpcError:
                    await asyncio.sleep(0.02)  # peer down: lose the batch, back off a little

    def _batch(self) -> pb.PeerBatch:
        """The oldest messages, at most PEER_BATCH_MAX and about PEER_BATCH_BYTES."""
        messages = [self._queue.popleft()]
        size = messages[0].ByteSize()
        while self._queue and len(messages) < PEER_BATCH_MAX:
            size += self._queue[0].ByteSize()
            if size > PEER_BATCH_BYTES:
                break
            messages.append(self._queue.popleft())
        return pb.PeerBatch(messages=messages)

    async def close(self) -> None:
        for task in (self._task, self._watch):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await self._channel.close()


Input = Callable[[Replica, float], Output]


def _on_message(msg: Message, replica: Replica, now: float) -> Output:
    return replica.on_message(msg, now)


def _tick(replica: Replica, now: float) -> Output:
    return Output()  # every turn ends with the replica's own tick


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
        self.peers = {
            i: PeerLink(a, functools.partial(self._lost, i))
            for i, a in peer_addresses.items()
            if i != replica.my_id
        }
        self.tick_s = tick_s
        self.on_caught_up = on_caught_up
        self._turns: GroupCommit[Input, None] = GroupCommit(self._turn, max_batch=TURN_MAX_INPUTS)
        self._stopped = False
        self._futures: dict[int, asyncio.Future[Answer]] = {}
        self._tickets = itertools.count(1)
        self._task: asyncio.Task[None] | None = None
        self.failed: BaseException | None = None
        self._saved_applied = replica.machine.applied
        self._carried = Output()  # on_persisted's durable part, written with the next turn

    def start(self) -> asyncio.Task[None]:
        """Start the replica; the task ends only if storage fails (StorageFailure)."""
        for link in self.peers.values():
            link.start()
        self._task = asyncio.create_task(self._ticks())
        return self._task

    async def stop(self) -> None:
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, StorageFailure):
                await self._task
        await self._turns.close()  # the turn on its way to disk, and those waiting
        for link in self.peers.values():
            await link.close()
        for future in self._futures.values():
            future.cancel()

    def deliver(self, messages: list[Message]) -> None:
        if not self._stopped and self.failed is None:
            self._turns.submit([functools.partial(_on_message, m) for m in messages])

    def _lost(self, peer: int) -> None:
        if not self._stopped and self.failed is None:
            self._turns.submit([lambda r, now: r.on_peer_lost(peer, now)])

    def _check_running(self) -> None:
        if self.failed is not None:
            raise StorageFailure(str(self.failed))
        if self._stopped:
            raise StorageFailure("the replica is stopping")

    async def submit_many(self, ops: Sequence[Op]) -> list[Answer]:
        """The ops as one input of one turn: one append, one round, one fsync."""
        self._check_running()
        loop = asyncio.get_running_loop()
        tickets = [next(self._tickets) for _ in ops]
        futures: list[asyncio.Future[Answer]] = [loop.create_future() for _ in ops]
        self._futures.update(zip(tickets, futures, strict=True))
        writes = tuple(zip(tickets, ops, strict=True))
        self._turns.submit([lambda r, now: r.submit_many(writes, now)])
        try:
            return list(await asyncio.gather(*futures))
        finally:
            for ticket in tickets:
                self._futures.pop(ticket, None)

    async def read(self, book_ids: tuple[str, ...]) -> Answer:
        return await self._request(lambda r, now, t: r.read(t, book_ids, now))

    def read_applied(self, book_ids: tuple[str, ...]) -> Answer:
        """The advisory read, at once: no turn, so it never waits for a turn's fsync
        (the replica's state is whole between turns' steps, on this loop)."""
        self._check_running()
        return self.replica.read_applied(book_ids)

    async def _request(self, call: Callable[[Replica, float, int], Output]) -> Answer:
        self._check_running()
        ticket = next(self._tickets)
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._futures[ticket] = future
        self._turns.submit([lambda r, now: call(r, now, ticket)])
        try:
            return await future
        finally:
            self._futures.pop(ticket, None)

    async def _ticks(self) -> None:
        """A turn at least every `tick_s` (the replica's timers); raises the failure
        that stopped the replica."""
        while self.failed is None:
            self._turns.submit([_tick])
            await asyncio.sleep(self.tick_s)
        raise self.failed

    async def _turn(self, inputs: list[Input]) -> list[None]:
        """The group commit's commit: one turn of the replica over `inputs`."""
        if self.failed is None:
            try:
                now = asyncio.get_running_loop().time()
                out, self._carried = self._carried, Output()
                for take in inputs:
                    out.merge(take(self.replica, now))
                out.merge(self.replica.on_tick(now))
                self._send(out.early())
                self._answer(out)
                await self._persist(out)
                self._send(out.late())
                self._carried = self._answer(self.replica.on_persisted(now))
                if early := self._carried.early():
                    self._send(early)
                    self._carried.eager = []
                self._notify()
            except Exception as exc:  # storage failed or an invariant broke: stop
                self._fail(exc)
        return [None] * len(inputs)

    def _fail(self, exc: Exception) -> None:
        self.failed = exc
        log.critical("books database replica failed, stopping: %r", exc)
        for future in self._futures.values():
            future.cancel()

    async def _persist(self, out: Output) -> None:
        if out.durable_work or out.applied != self._saved_applied:
            await asyncio.to_thread(self.storage.write, snapshot(out, self.replica.machine))
            self._saved_applied = out.applied

    def _send(self, messages: list[Outgoing]) -> None:
        for o in messages:
            link = self.peers.get(o.to)
            if link is not None:
                link.send(o.message)

    def _answer(self, out: Output) -> Output:
        """Give `out`'s answers (taken out of it) and log its notes; `out`."""
        for note in out.notes:
            log.info("%s", note)
        for answer in out.answers:
            future = self._futures.get(answer.ticket)
            if future is not None and not future.done():
                future.set_result(answer)
        out.answers, out.notes = [], []
        return out

    def _notify(self) -> None:
        if self.replica.caught_up and self.on_caught_up is not None:
            callback, self.on_caught_up = self.on_caught_up, None
            callback()
