"""The client the executor and transaction verification use: it finds the
primary, follows NOT_PRIMARY redirects, and retries with the same request id
(so a retry is harmless) until its deadline.

An error that is the database's answer (a stale epoch, an unknown book)
raises `grpcutil.Rejected` at once; a database that cannot answer before
the deadline raises `grpcutil.ServiceUnavailable` — the outcome of a write
is then unknown, and retrying it with the same request id is safe.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from bookstore import grpcutil
from bookstore.books_database import wire
from bookstore.pb import books_database_pb2 as pb
from bookstore.pb import books_database_pb2_grpc as pb_grpc
from bookstore.pb import common_pb2

SERVICE = "books-database"
RETRY_PAUSE_S = 0.05


@dataclass(frozen=True)
class BookStock:
    stock: int
    available: int


@dataclass(frozen=True)
class Reservation:
    ok: bool
    lacking_titles: tuple[str, ...] = ()
    message: str = ""


class BooksDatabaseClient:
    def __init__(
        self,
        addresses: Mapping[int, str],
        *,
        deadline_s: float = 5.0,
        rpc_timeout_s: float = 1.0,
        channel_factory: Callable[[str], grpc.aio.Channel] = grpcutil.insecure_channel,
    ) -> None:
        self.ids = sorted(addresses)
        self.deadline_s = deadline_s
        self.rpc_timeout_s = rpc_timeout_s
        self._channels = {i: channel_factory(a) for i, a in addresses.items()}
        self._stubs = {i: pb_grpc.BooksDatabaseStub(c) for i, c in self._channels.items()}
        self.primary: int | None = None  # the replica believed to be primary

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()

    async def read_stock(self, book_ids: list[str] | None = None) -> dict[str, BookStock]:
        """Linearizable stock of `book_ids` (None: every book)."""
        reply = await self._call("ReadStock", pb.ReadStockRequest(book_ids=book_ids or []))
        return {b.book_id: BookStock(b.stock, b.available) for b in reply.books}

    async def reserve(
        self, txn_id: str, items: Mapping[str, int], epoch: int, request_id: str = ""
    ) -> Reservation:
        request = pb.ReserveRequest(
            request_id=request_id or f"reserve:{txn_id}",
            txn_id=txn_id,
            epoch=epoch,
            items=wire.lines(tuple(items.items())),
        )
        reply = await self._call("Reserve", request)
        return Reservation(reply.ok, tuple(reply.lacking_titles), reply.message)

    async def commit(self, txn_id: str, epoch: int, request_id: str = "") -> None:
        await self._txn("Commit", txn_id, epoch, request_id or f"commit:{txn_id}")

    async def release(self, txn_id: str, epoch: int, request_id: str = "") -> None:
        await self._txn("Release", txn_id, epoch, request_id or f"release:{txn_id}")

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

    async def _txn(self, method: str, txn_id: str, epoch: int, request_id: str) -> None:
        await self._call(method, pb.TxnRequest(request_id=request_id, txn_id=txn_id, epoch=epoch))

    async def _call(self, method: str, request: Any) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.deadline_s
        target = self.primary or self.ids[0]
        last = "no replica answered"
        while (remaining := deadline - loop.time()) > 0:
            call = getattr(self._stubs[target], method)
            try:
                reply = await call(request, timeout=min(self.rpc_timeout_s, remaining))
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
