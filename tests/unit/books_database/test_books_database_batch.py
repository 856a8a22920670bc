"""The write (`Write`) and the client's shared calls, on three real replicas: one
outcome per operation; a batch is one append and one group commit; concurrent
callers share calls and each gets its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from loopback_cluster import Cluster
from ports import free_ports

from bookstore import grpcutil
from bookstore.books_database.client import BooksDatabaseClient, Reservation
from bookstore.books_database.storage import Snapshot
from bookstore.pb import books_database_pb2 as pb
from bookstore.pb import books_database_pb2_grpc as pb_grpc

BOOK = "b001"  # "Designing Data-Intensive Applications"
TITLE = "Designing Data-Intensive Applications"
WAIT_S = 15.0


def reserve(rid: str, txn: str, epoch: int, **items: int) -> pb.WriteOp:
    lines = [pb.StockLine(book_id=b, quantity=q) for b, q in items.items()]
    return pb.WriteOp(
        reserve=pb.ReserveRequest(request_id=rid, txn_id=txn, epoch=epoch, items=lines)
    )


def commit(rid: str, txn: str, epoch: int) -> pb.WriteOp:
    return pb.WriteOp(commit=pb.TxnRequest(request_id=rid, txn_id=txn, epoch=epoch))


def release(rid: str, txn: str, epoch: int) -> pb.WriteOp:
    return pb.WriteOp(release=pb.TxnRequest(request_id=rid, txn_id=txn, epoch=epoch))


def ok() -> tuple[str, object]:
    return ("reply", pb.WriteReply(ok=True))


def error(status: grpc.StatusCode, code: str, message: str) -> tuple[str, object]:
    return ("error", pb.OpError(status=status.value[0], code=code, message=message))


def outcomes(reply: pb.WriteBatchReply) -> list[tuple[str, object]]:
    found = []
    for o in reply.outcomes:
        kind = o.WhichOneof("outcome")
        assert kind is not None
        found.append((kind, getattr(o, kind)))
    return found


@pytest.fixture
async def primary(
    cluster: Cluster, client: BooksDatabaseClient
) -> AsyncIterator[pb_grpc.BooksDatabaseStub]:
    """A stub of the primary (found by a first read)."""
    await client.read_stock([BOOK])
    found = cluster.primary()
    assert found is not None
    async with grpcutil.channel(cluster.addresses[found]) as channel:
        yield pb_grpc.BooksDatabaseStub(channel)


async def test_each_operation_of_a_batch_gets_its_own_outcome_in_order(
    primary: pb_grpc.BooksDatabaseStub, client: BooksDatabaseClient
) -> None:
    before = (await client.read_stock([BOOK]))[BOOK]
    batch = [
        reserve("r1", "o1", 1, b001=2),
        reserve("r2", "o2", 1, b001=before.stock),  # more than is left after o1
        commit("c1", "o1", 1),
        commit("c9", "o9", 1),  # never reserved
        pb.WriteOp(),  # no operation at all
        reserve("", "o3", 1, b001=1),  # no request id
        release("x3", "o3", 1),  # never reserved: presumed abort
        reserve("r4", "o4", 1, nope=1),
    ]
    reply = await primary.Write(pb.WriteBatch(ops=batch), timeout=WAIT_S)
    bad = grpc.StatusCode.INVALID_ARGUMENT
    assert outcomes(reply) == [
        ok(),
        ("reply", pb.WriteReply(ok=False, message=f"out of stock: {TITLE}")),
        ok(),
        error(grpc.StatusCode.NOT_FOUND, "UNKNOWN_TXN", "txn o9 was never prepared here"),
        error(bad, "BAD_REQUEST", "an operation must be a reserve, a commit or a release"),
        error(bad, "BAD_REQUEST", "request_id must be 1..200 characters"),
        ok(),
        error(grpc.StatusCode.NOT_FOUND, "UNKNOWN_BOOK", "no book with id 'nope'"),
    ]
    after = (await client.read_stock([BOOK]))[BOOK]
    assert (after.stock, after.available) == (before.stock - 2, before.available - 2)


async def test_a_stale_epoch_refuses_only_its_operation(
    primary: pb_grpc.BooksDatabaseStub, cluster: Cluster
) -> None:
    first = await primary.Write(pb.WriteBatch(ops=[reserve("r1", "o1", 5, b001=1)]), timeout=WAIT_S)
    assert outcomes(first) == [ok()]
    batch = [reserve("r2", "o2", 5, b001=1), commit("c1", "o1", 4), commit("c2", "o2", 5)]
    reply = await primary.Write(pb.WriteBatch(ops=batch), timeout=WAIT_S)
    stale = error(grpc.StatusCode.FAILED_PRECONDITION, "STALE_EPOCH", "epoch 4 is older than 5")
    assert outcomes(reply) == [ok(), stale, ok()]
    machine = next(iter(cluster.replicas.values())).driver.replica.machine
    await cluster.converged()
    assert machine.txns["o1"].state == "prepared" and machine.txns["o2"].state == "committed"


async def test_a_request_id_replayed_in_a_batch_or_a_later_one_gets_its_first_answer(
    primary: pb_grpc.BooksDatabaseStub, client: BooksDatabaseClient
) -> None:
    await client.set_stock({BOOK: 3})
    first = [reserve("r1", "o1", 1, b001=2), reserve("r1", "o1", 1, b001=2)]
    reply = await primary.Write(pb.WriteBatch(ops=first), timeout=WAIT_S)
    assert outcomes(reply) == [ok(), ok()]
    assert (await client.read_stock([BOOK]))[BOOK].available == 1  # reserved once
    refused = await primary.Write(pb.WriteBatch(ops=[reserve("r2", "o2", 1, b001=2)]))
    assert not refused.outcomes[0].reply.ok
    await client.set_stock({BOOK: 10})
    # A retry says whatever it says now: the first answers come back, nothing changes.
    again = [reserve("r2", "o2", 1, b001=1), reserve("r1", "o1", 1, b001=7), commit("c1", "o1", 1)]
    reply = await primary.Write(pb.WriteBatch(ops=again), timeout=WAIT_S)
    assert outcomes(reply) == [("reply", refused.outcomes[0].reply), ok(), ok()]
    reply = await primary.Write(pb.WriteBatch(ops=[commit("c1", "o1", 1)]), timeout=WAIT_S)
    assert outcomes(reply) == [ok()]
    stock = (await client.read_stock([BOOK]))[BOOK]
    assert (stock.stock, stock.available) == (8, 8)


async def test_a_batch_is_one_append_and_shares_its_disk_writes(
    primary: pb_grpc.BooksDatabaseStub, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    leader = cluster.replicas[cluster.primary() or 0]
    writes: list[Snapshot] = []
    storage_write: Callable[[Snapshot], None] = leader.storage.write

    def counted(snapshot: Snapshot) -> None:
        writes.append(snapshot)
        storage_write(snapshot)

    monkeypatch.setattr(leader.storage, "write", counted)
    batch = [reserve(f"r{n}", f"o{n}", 1, b001=1) for n in range(20)]
    reply = await primary.Write(pb.WriteBatch(ops=batch), timeout=WAIT_S)
    assert outcomes(reply) == [ok()] * 20
    appends = [rows for s in writes for _, rows in s.log_writes]
    assert [len(rows) for rows in appends] == [20]  # one append of all 20
    assert len(writes) < len(batch)  # group commit: not one disk write per operation
    trail = leader.trail
    indexes = {trail.events(f"o{n}")[0].index for n in range(20)}
    assert len(indexes) == 20  # each order's operation is its own log entry, in its trail


async def test_concurrent_writes_share_calls_and_each_caller_gets_its_own_answer(
    primary: pb_grpc.BooksDatabaseStub, client: BooksDatabaseClient
) -> None:
    assert (await client.reserve("o0", {BOOK: 1}, epoch=5)).ok
    batches = client.writes.batches
    calls = [client.reserve(f"o{n}", {BOOK: 1}, epoch=5) for n in range(1, 11)]
    stale = client.commit("o0", epoch=4)
    unknown = client.reserve("o11", {"nope": 1}, epoch=5)
    too_many = client.reserve("o12", {BOOK: 10**6}, epoch=5)
    *reserved, refused, missing, lacking = await asyncio.gather(
        *calls, stale, unknown, too_many, return_exceptions=True
    )
    assert client.writes.batches - batches < 13  # calls were shared
    assert all(isinstance(r, Reservation) and r.ok for r in reserved), reserved
    assert isinstance(refused, grpcutil.Rejected)
    assert (refused.code, refused.message) == ("STALE_EPOCH", "epoch 4 is older than 5")
    assert isinstance(missing, grpcutil.Rejected)
    assert (missing.code, missing.message) == ("UNKNOWN_BOOK", "no book with id 'nope'")
    assert lacking == Reservation(False, f"out of stock: {TITLE}")


async def test_concurrent_reads_share_a_read_and_each_gets_exactly_its_books(
    client: BooksDatabaseClient,
) -> None:
    await client.set_stock({BOOK: 4, "b002": 5, "b003": 6})
    wanted = [[BOOK], ["b002"], ["b003", BOOK], None, ["nope", BOOK], ["b002"]]
    reads = await asyncio.gather(*map(client.read_stock, wanted), return_exceptions=True)
    assert client.reads.batches < client.reads.requests
    every, unknown = reads[3], reads[4]
    assert isinstance(every, dict) and {BOOK, "b002", "b003", "b030"} <= set(every)
    assert isinstance(unknown, grpcutil.Rejected)
    assert (unknown.code, unknown.message) == ("UNKNOWN_BOOK", "no book with id 'nope'")
    stocks = {BOOK: 4, "b002": 5, "b003": 6}
    for books, got in zip(wanted, reads, strict=True):
        if books is not None and "nope" not in books:
            assert got == {b: every[b] for b in books}
            assert {b: s.stock for b, s in got.items()} == {b: stocks[b] for b in books}


async def test_a_shared_read_naming_an_unknown_book_fails_only_its_caller(
    client: BooksDatabaseClient,
) -> None:
    await client.read_stock([BOOK])
    reads = await asyncio.gather(
        *map(client.read_stock, [[BOOK], ["b002"], ["nope"], ["b003"], ["b004", "b005"]]),
        return_exceptions=True,
    )
    assert isinstance(reads[2], grpcutil.Rejected) and reads[2].code == "UNKNOWN_BOOK"
    assert [sorted(r) for i, r in enumerate(reads) if i != 2 and isinstance(r, dict)] == [
        [BOOK],
        ["b002"],
        ["b003"],
        ["b004", "b005"],
    ]


async def test_without_a_database_every_caller_hears_so_within_the_deadline() -> None:
    (port,) = free_ports(1)
    db = BooksDatabaseClient({1: f"127.0.0.1:{port}"}, deadline_s=0.5, rpc_timeout_s=0.1)
    try:
        answers = await asyncio.gather(
            *(db.reserve(f"o{n}", {BOOK: 1}, epoch=1) for n in range(5)),
            db.read_stock([BOOK]),
            return_exceptions=True,
        )
    finally:
        await db.close()
    assert all(isinstance(a, grpcutil.ServiceUnavailable) for a in answers), answers
