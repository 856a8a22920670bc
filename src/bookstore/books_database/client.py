"""The client the executor and transaction verification use: it finds the
primary, follows NOT_PRIMARY redirects, and retries with the same request id
(so a retry is harmless) until its deadline. A reserve's, commit's or release's
request id names the txn and the coordinator's epoch: a retry gets its first
answer, and a newer coordinator's message is a request of its own, which the
participant rules answer (a re-prepare takes the newer epoch).

An error that is the database's answer (a stale epoch, an unknown book)
raises `grpcutil.Rejected` at once; a database that cannot answer before
the deadline raises `grpcutil.ServiceUnavailable` — the outcome of a write
is then unknown, and retrying it with the same request id is safe.

The reserves, commits and releases of concurrent callers (the leader executor
runs many orders' transactions at once) share `Write` calls, and concurrent
stock reads share one `ReadStock`, through a `batching.Coalescer` each. A
caller still gets exactly its own answer: its operation's refusal raises a
`Rejected` with that operation's code and message, and a call that
fails as a whole (no primary before the deadline) fails each caller of the
batch as it would have failed alone. A caller waits at most the deadline, also
while its request waits for a batch to leave.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from bookstore import grpcutil
from bookstore.batching import Coalescer
from bookstore.books_database import stock, wire
from bookstore.pb import books_database_pb2 as pb
from bookstore.pb import books_database_pb2_grpc as pb_grpc
from bookstore.pb import common_pb2
from bookstore.telemetry import tracing

SERVICE = "books-database"
RETRY_PAUSE_S = 0.05

Req = TypeVar("Req")
Rep = TypeVar("Rep")


@dataclass(frozen=True)
class BookStock:
    stock: int
    available: int


@dataclass(frozen=True)
class Reservation:
    """A reserve's answer: the participant's vote (a no says why, e.g. "out of stock: Dune")."""

    ok: bool
    message: str = ""


class BooksDatabaseClient:
    def __init__(
        self,
        addresses: Mapping[int, str],
        *,
        deadline_s: float = 5.0,
        rpc_timeout_s: float = 1.0,
        channel_factory: Callable[[str], grpc.aio.Channel] = grpcutil.channel,
    ) -> None:
        self.ids = sorted(addresses)
        self.deadline_s = deadline_s
        self.rpc_timeout_s = rpc_timeout_s
        self._channels = {i: channel_factory(a) for i, a in addresses.items()}
        self._stubs = {i: pb_grpc.BooksDatabaseStub(c) for i, c in self._channels.items()}
        self.primary: int | None = None  # the replica believed to be primary
        self.writes: Coalescer[pb.WriteOp, pb.WriteReply] = Coalescer(
            self._write_batch, "books-database write batch", service=SERVICE
        )
        self.reads: Coalescer[tuple[str, ...], dict[str, BookStock]] = Coalescer(
            functools.partial(self._read_batch, advisory=False),
            "books-database read batch",
            service=SERVICE,
        )
        self.advisory_reads: Coalescer[tuple[str, ...], dict[str, BookStock]] = Coalescer(
            functools.partial(self._read_batch, advisory=True),
            "books-database advisory read batch",
            service=SERVICE,
        )

    async def close(self) -> None:
        await self.writes.close()
        await self.reads.close()
        await self.advisory_reads.close()
        for channel in self._channels.values():
            await channel.close()

    async def read_stock(self, book_ids: list[str] | None = None) -> dict[str, BookStock]:
        """Linearizable stock of `book_ids` (None or empty: every book).

        Concurrent reads share one ReadStock, and so one read-index round, and each
        caller gets exactly the books it asked for. That is still linearizable: the
        coalescer puts a request only into a batch that leaves after the request was
        made (never into one already on the wire), and the primary takes the batch's
        read index when the ReadStock reaches it, then confirms it still leads. Every
        write acknowledged before this call began was committed before the batch left,
        so it is at or below that index and this read sees it, as a ReadStock of its
        own, sent at that moment, would.
        """
        return await self._batched(self.reads, tuple(book_ids or ()))

    async def read_advisory(self, book_ids: list[str] | None = None) -> dict[str, BookStock]:
        """The primary's applied stock of `book_ids` now, without a read-index round:
        one hop, but possibly stale (a deposed primary may still answer), so for
        advice only, as the checkout's stock check (the reserve decides)."""
        return await self._batched(self.advisory_reads, tuple(book_ids or ()))

    async def reserve(
        self, txn_id: str, items: Mapping[str, int], epoch: int, request_id: str = ""
    ) -> Reservation:
        request = pb.ReserveRequest(
            request_id=request_id or f"reserve:{txn_id}@{epoch}",
            txn_id=txn_id,
            epoch=epoch,
            items=wire.lines(tuple(items.items())),
        )
        reply = await self._batched(self.writes, pb.WriteOp(reserve=request))
        return Reservation(reply.ok, reply.message)

    async def commit(self, txn_id: str, epoch: int, request_id: str = "") -> None:
        request = _txn(txn_id, epoch, request_id or f"commit:{txn_id}@{epoch}")
        await self._batched(self.writes, pb.WriteOp(commit=request))

    async def release(self, txn_id: str, epoch: int, request_id: str = "") -> None:
        request = _txn(txn_id, epoch, request_id or f"release:{txn_id}@{epoch}")
        await self._batched(self.writes, pb.WriteOp(release=request))

    async def set_stock(self, stock: Mapping[str, int], request_id: str = "") -> None:
        request = pb.SetStockRequest(
            request_id=request_id or f"set:{uuid.uuid4()}",
            items=wire.lines(tuple(stock.items())),
        )
        await self._call("SetStock", request)

    async def status(self, replica_id: int) -> pb.ReplicaStatus:
        """One replica's status (any role), without retries."""
        reply: pb.ReplicaStatus = await self._once(replica_id, "Status", common_pb2.Empty())
        return reply

    async def order_events(self, replica_id: int, txn_id: str) -> list[pb.ReplicationEvent]:
        """What one replica did with the order's operations (its trail), without retries."""
        request = pb.OrderEventsRequest(txn_id=txn_id)
        reply: pb.OrderEventsReply = await self._once(replica_id, "OrderEvents", request)
        return list(reply.events)

    async def _once(self, replica_id: int, method: str, request: Any) -> Any:
        try:
            return await getattr(self._stubs[replica_id], method)(
                request, timeout=self.rpc_timeout_s
            )
        except grpc.RpcError as exc:
            raise grpcutil.translate(SERVICE, exc) from exc

    async def _batched(self, coalescer: Coalescer[Req, Rep], request: Req) -> Rep:
        try:
            async with asyncio.timeout(self.deadline_s):
                return await coalescer.call(request)
        except TimeoutError:
            raise grpcutil.ServiceUnavailable(
                SERVICE, f"no answer within {self.deadline_s} s"
            ) from None

    async def _write_batch(
        self, ops: Sequence[pb.WriteOp]
    ) -> list[pb.WriteReply | grpcutil.Rejected]:
        """One Write call (primary discovery, redirects and retries with the same
        request ids as any call); each operation's refusal becomes its own Rejected."""
        reply: pb.WriteBatchReply = await self._call("Write", pb.WriteBatch(ops=ops))
        return [
            grpcutil.Rejected(o.error.code, o.error.message) if o.HasField("error") else o.reply
            for o in reply.outcomes
        ]

    async def _read_batch(
        self, requests: Sequence[tuple[str, ...]], *, advisory: bool
    ) -> list[dict[str, BookStock] | BaseException]:
        """One ReadStock for the union of the books asked for (every book if anyone
        asked for all of them); a request naming a book the database does not know is
        read alone, so that only its caller gets the refusal, word for word."""
        wanted = () if not all(requests) else tuple(sorted(set().union(*requests)))
        read = functools.partial(self._read, advisory=advisory)
        try:
            rows = await read(wanted)
        except grpcutil.Rejected as exc:
            if exc.code != stock.UNKNOWN_BOOK or len(requests) == 1:
                raise
            rows = {}
        unknown = [ids for ids in requests if any(b not in rows for b in ids)]
        read_alone = await asyncio.gather(*map(read, unknown), return_exceptions=True)
        alone = dict(zip(unknown, read_alone, strict=True))
        return [
            alone[ids] if ids in alone else {b: rows[b] for b in ids or rows} for ids in requests
        ]

    async def _read(self, book_ids: tuple[str, ...], advisory: bool) -> dict[str, BookStock]:
        request = pb.ReadStockRequest(book_ids=book_ids, advisory=advisory)
        reply = await self._call("ReadStock", request)
        return {b.book_id: BookStock(b.stock, b.available) for b in reply.books}

    async def _call(self, method: str, request: Any) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.deadline_s
        target = self.primary or self.ids[0]
        last = "no replica answered"
        while (remaining := deadline - loop.time()) > 0:
            call = getattr(self._stubs[target], method)
            try:
                reply = await call(
                    request,
                    timeout=min(self.rpc_timeout_s, remaining),
                    metadata=tracing.call_metadata(),
                )
            except grpc.RpcError as exc:
                error = grpcutil.translate(SERVICE, exc)
                if isinstance(error, grpcutil.Rejected) and error.code != "NOT_PRIMARY":
                    raise error from exc
                last = str(error)
                target = self._redirect(target, error)
                await asyncio.sleep(min(RETRY_PAUSE_S, max(0.0, deadline - loop.time())))
                continue
            self.primary = target
            return reply
        raise grpcutil.ServiceUnavailable(SERVICE, f"no primary within {self.deadline_s} s: {last}")

    def _redirect(self, target: int, error: Exception) -> int:
        """Where to try next: the primary a replica named, else the next replica."""
        self.primary = None
        if isinstance(error, grpcutil.Rejected):
            named = error.message.rsplit(" ", 1)[-1]
            if named.isdigit() and int(named) in self._stubs and int(named) != target:
                self.primary = int(named)
                return self.primary
        return self.ids[(self.ids.index(target) + 1) % len(self.ids)]


def _txn(txn_id: str, epoch: int, request_id: str) -> pb.TxnRequest:
    return pb.TxnRequest(request_id=request_id, txn_id=txn_id, epoch=epoch)
