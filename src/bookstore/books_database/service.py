"""The books-database gRPC service: one replica of the stock.

Client operations go to the `Driver` (driver.py) and come back as the
replica's answers; the named result codes become gRPC status codes here,
in one table. Health turns SERVING only once the replica has joined a view
and applied everything that view had committed when it joined.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import grpc
from grpc_health.v1 import health_pb2

from bookstore import grpcutil
from bookstore.books_database import stock, wire
from bookstore.books_database.driver import Driver
from bookstore.books_database.messages import Answer, Compaction, Timings
from bookstore.books_database.replication import NOT_PRIMARY, UNKNOWN, Replica
from bookstore.books_database.stock import Op, Result
from bookstore.books_database.storage import Storage, StorageFailure, seed_rows
from bookstore.books_database.trail import Trail
from bookstore.catalogue import load_catalogue
from bookstore.commitment.status import REFUSALS
from bookstore.pb import books_database_pb2 as pb
from bookstore.pb import books_database_pb2_grpc as pb_grpc
from bookstore.pb import common_pb2
from bookstore.settings import Settings
from bookstore.telemetry import metrics

log = logging.getLogger(__name__)

SERVICE_NAME = "bookstore.books.BooksDatabase"
Context: TypeAlias = Any  # grpc.aio.ServicerContext (grpc ships no type hints)

# The participant's refusals read as payment's (one table); then the stock's own.
_CODES = REFUSALS | {
    NOT_PRIMARY: grpc.StatusCode.FAILED_PRECONDITION,
    stock.BELOW_RESERVED: grpc.StatusCode.FAILED_PRECONDITION,
    stock.UNKNOWN_BOOK: grpc.StatusCode.NOT_FOUND,
}
OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"
# Refusals that are about the replica, not one operation: they end a Write call as a
# whole, so the client follows the redirect or retries every operation of it.
_WHOLE_CALL = (NOT_PRIMARY, OUTCOME_UNKNOWN)
MAX_WRITE_OPS = 256  # operations in one Write call


@dataclass(frozen=True)
class Refusal:
    """A write's refusal: the gRPC status and "CODE: message" (a call ends with it,
    an operation of a Write has it as its outcome)."""

    status: grpc.StatusCode
    code: str
    message: str

    @property
    def details(self) -> str:
        return f"{self.code}: {self.message}"

    def pb(self) -> pb.OpError:
        return pb.OpError(status=self.status.value[0], code=self.code, message=self.message)


def _outcome(result: Result) -> pb.WriteReply | Refusal:
    if result.ok:
        return pb.WriteReply(ok=True)
    if result.code == stock.VOTED_NO:
        return pb.WriteReply(ok=False, message=result.message)
    if result.code == UNKNOWN:
        return Refusal(grpc.StatusCode.UNAVAILABLE, OUTCOME_UNKNOWN, result.message)
    return Refusal(_CODES.get(result.code, grpc.StatusCode.INTERNAL), result.code, result.message)


async def _reply(answer: Answer, context: Context) -> pb.WriteReply:
    outcome = _outcome(answer.result)
    if isinstance(outcome, Refusal):
        await context.abort(outcome.status, outcome.details)
        raise AssertionError("abort returned")
    return outcome


def _bad_request_id(request_id: str) -> Refusal | None:
    if 0 < len(request_id) <= stock.MAX_ID:
        return None
    return Refusal(
        grpc.StatusCode.INVALID_ARGUMENT,
        stock.BAD_REQUEST,
        f"request_id must be 1..{stock.MAX_ID} characters",
    )


def _checked(write: pb.WriteOp) -> Op | Refusal:
    """One operation of a Write, or why it is refused before it reaches the log."""
    op = wire.write_op(write)
    if op is None:
        return Refusal(
            grpc.StatusCode.INVALID_ARGUMENT,
            stock.BAD_REQUEST,
            "an operation must be a reserve, a commit or a release",
        )
    return _bad_request_id(op.request_id) or op


def _outcome_pb(outcome: pb.WriteReply | Refusal) -> pb.WriteOutcome:
    if isinstance(outcome, Refusal):
        return pb.WriteOutcome(error=outcome.pb())
    return pb.WriteOutcome(reply=outcome)


class BooksDatabaseServicer(pb_grpc.BooksDatabaseServicer):
    def __init__(self, driver: Driver, address: str, trail: Trail) -> None:
        self.driver = driver
        self.address = address
        self.trail = trail

    async def _write(self, op: Op, context: Context) -> pb.WriteReply:
        bad = _bad_request_id(op.request_id)
        if bad is not None:
            await context.abort(bad.status, bad.details)
        (answer,) = await self._submit([op], context)
        return await _reply(answer, context)

    async def _submit(self, ops: list[Op], context: Context) -> list[Answer]:
        try:
            return await self.driver.submit_many(ops)
        except StorageFailure:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "STORAGE_FAILED: replica stopping")
            raise

    async def Write(self, request: pb.WriteBatch, context: Context) -> pb.WriteBatchReply:
        """Every operation of the batch goes to the driver in one input, so they enter
        the log together: one append, one Append round, one group commit. Each gets its
        own outcome; a refusal about the replica ends the whole call."""
        if len(request.ops) > MAX_WRITE_OPS:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{stock.BAD_REQUEST}: at most {MAX_WRITE_OPS} operations in one Write",
            )
        checked = [_checked(write) for write in request.ops]
        ops = [c for c in checked if isinstance(c, Op)]
        answers = iter(await self._submit(ops, context) if ops else [])
        outcomes = [
            c if isinstance(c, Refusal) else _outcome(next(answers).result) for c in checked
        ]
        for outcome in outcomes:
            if isinstance(outcome, Refusal) and outcome.code in _WHOLE_CALL:
                await context.abort(outcome.status, outcome.details)
        return pb.WriteBatchReply(outcomes=[_outcome_pb(o) for o in outcomes])

    async def SetStock(self, request: pb.SetStockRequest, context: Context) -> pb.WriteReply:
        op = Op(stock.SET_STOCK, request.request_id, items=wire.items_of(request.items))
        return await self._write(op, context)

    async def ReadStock(self, request: pb.ReadStockRequest, context: Context) -> pb.ReadStockReply:
        book_ids = tuple(request.book_ids) or tuple(sorted(self.driver.replica.machine.books))
        if request.advisory:
            answer = self.driver.read_applied(book_ids)
        else:
            answer = await self.driver.read(book_ids)
        if not answer.result.ok:
            await _reply(answer, context)
        return pb.ReadStockReply(
            books=[pb.BookStock(book_id=b, stock=s, available=a) for b, s, a in answer.stock]
        )

    async def Deliver(self, request: pb.PeerBatch, context: Context) -> common_pb2.Empty:
        messages = [wire.message_from_pb(m) for m in request.messages]
        self.driver.deliver([m for m in messages if m is not None])
        return common_pb2.Empty()

    async def Status(self, request: common_pb2.Empty, context: Context) -> pb.ReplicaStatus:
        r = self.driver.replica
        return pb.ReplicaStatus(
            replica_id=r.my_id,
            address=self.address,
            pid=os.getpid(),
            role=r.role,
            view=r.view,
            primary=r.leader,
            commit_index=r.commit,
            applied_index=r.machine.applied,
            last_index=r.last_index,
            digest=r.machine.digest(),
            caught_up=r.caught_up,
            max_epoch=r.machine.max_epoch,
            snapshot_index=r.log.snap_index,
            snapshots_installed=r.snapshots_installed,
        )

    async def OrderEvents(
        self, request: pb.OrderEventsRequest, context: Context
    ) -> pb.OrderEventsReply:
        events = self.trail.events(request.txn_id)
        return pb.OrderEventsReply(
            events=[
                pb.ReplicationEvent(
                    replica_id=e.replica_id,
                    kind=e.kind,
                    index=e.index,
                    view=e.view,
                    op=e.op,
                    peer=e.peer,
                )
                for e in events
            ]
        )


@dataclass(frozen=True)
class ReplicaConfig:
    replica_id: int
    addresses: Mapping[int, str]
    path: Path
    initial_stock: int | None = None
    timings: Timings = field(default_factory=Timings)
    compaction: Compaction = field(default_factory=Compaction)


class BooksDatabaseReplica:
    """One running replica: storage, the replica driver and its gRPC server."""

    def _export_metrics(self) -> None:
        """The replica's gauges, read when scraped (plain reads of in-memory state)."""
        driver = self.driver
        metrics.REPLICATION_COMMIT_INDEX.set_function(lambda: driver.replica.commit)
        metrics.REPLICATION_LAG.set_function(
            lambda: max(0, driver.replica.commit - driver.replica.machine.applied)
        )
        metrics.STOCK_COPIES.set_function(
            lambda: sum(row.stock for row in list(driver.replica.machine.books.values()))
        )

    def __init__(self, config: ReplicaConfig, bind: str) -> None:
        self.config = config
        self.storage = Storage(config.path)
        loaded = self.storage.load(seed_rows(load_catalogue(), config.initial_stock))
        # What this replica did with each order's operations, for the cluster view.
        self.trail = Trail(config.replica_id)
        replica = Replica(
            config.replica_id,
            config.addresses,
            loaded.machine,
            view=loaded.view,
            voted_for=loaded.voted_for,
            log=loaded.log,
            snapshot=loaded.snapshot,
            timings=config.timings,
            compaction=config.compaction,
            rng=random.Random(),
            observer=self.trail,
        )
        self.driver = Driver(
            replica,
            self.storage,
            config.addresses,
            tick_s=config.timings.heartbeat / 2,
            on_caught_up=self._serving,
        )
        self._serving_task: asyncio.Task[None] | None = None
        self._export_metrics()
        address = config.addresses[config.replica_id]
        servicer = BooksDatabaseServicer(self.driver, address, self.trail)
        self.server, self.health, self.port = grpcutil.create_server(
            bind,
            lambda server: pb_grpc.add_BooksDatabaseServicer_to_server(servicer, server),
            [SERVICE_NAME],
        )

    def _serving(self) -> None:
        log.info("books-database-%d caught up: SERVING", self.config.replica_id)
        self._serving_task = asyncio.create_task(
            grpcutil.set_serving(self.health, [SERVICE_NAME])
        )  # kept: a task nobody references may be collected before it runs

    async def start(self) -> asyncio.Task[None]:
        # The standard servicer starts SERVING overall: not until this replica caught up.
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.start()
        return self.driver.start()

    async def stop(self) -> None:
        await self.server.stop(grace=0.5)
        await self.driver.stop()
        self.storage.close()


def config_from(settings: Settings, replica_id: int) -> ReplicaConfig:
    settings.address_of("books-database", replica_id)  # a known id, or SettingsError
    return ReplicaConfig(
        replica_id=replica_id,
        addresses=settings.books_database_addresses,
        path=settings.data_dir / f"books-database-{replica_id}.sqlite3",
        initial_stock=settings.books_initial_stock,
        timings=Timings(
            heartbeat=settings.books_heartbeat_s,
            election_min=settings.books_election_min_s,
            election_max=settings.books_election_max_s,
        ),
    )


async def serve(settings: Settings, replica_id: int | None = None) -> None:
    assert replica_id is not None  # the CLI requires --replica-id
    bind = settings.bind_address("books-database", replica_id)
    replica = BooksDatabaseReplica(config_from(settings, replica_id), bind)
    running = await replica.start()
    log.info("books-database-%d listening on %s (port %d)", replica_id, bind, replica.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await asyncio.wait(
        [asyncio.create_task(stop.wait()), running], return_when=asyncio.FIRST_COMPLETED
    )
    log.info("books-database-%d stopping", replica_id)
    with contextlib.suppress(Exception):
        await replica.stop()
    if running.done() and not running.cancelled() and running.exception() is not None:
        # storage failed or an invariant broke: exit non-zero, the launcher restarts us
        raise SystemExit(f"books-database-{replica_id}: {running.exception()!r}")
