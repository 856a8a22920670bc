"""Three real replicas as gRPC servers on loopback (in this process, each with
its own SQLite file): writes, a killed primary, a restarted replica catching
up, duplicate request ids, stale epochs and bad input."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from loopback_cluster import WAIT_S, Cluster

from bookstore import grpcutil, health
from bookstore.books_database.client import BooksDatabaseClient, Reservation
from bookstore.pb import books_database_pb2 as pb
from bookstore.pb import books_database_pb2_grpc as pb_grpc

BOOK = "b001"  # "Designing Data-Intensive Applications"


async def test_a_write_survives_the_primary_and_a_restarted_replica_catches_up(
    cluster: Cluster, client: BooksDatabaseClient
) -> None:
    before = (await client.read_stock([BOOK]))[BOOK]
    assert (await client.reserve("o1", {BOOK: 2}, epoch=1)).ok
    await client.commit("o1", epoch=1)
    old = cluster.primary()
    assert old is not None
    await cluster.kill(old)
    loop = asyncio.get_running_loop()
    killed_at = loop.time()
    assert (await client.reserve("o2", {BOOK: 1}, epoch=1)).ok  # a new primary acknowledges
    print(f"primary {old} killed; next acknowledged write after {loop.time() - killed_at:.2f} s")
    after = (await client.read_stock([BOOK]))[BOOK]
    assert (after.stock, after.available) == (before.stock - 2, before.stock - 3)
    await cluster.start(old)
    (digest,) = await cluster.converged()
    restarted = cluster.replicas[old].driver.replica
    assert restarted.machine.books[BOOK].stock == before.stock - 2
    assert restarted.machine.digest() == digest
    for address in cluster.addresses.values():
        for _ in range(int(WAIT_S / 0.05)):
            if await health.grpc_serving(address):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"{address} never became SERVING")


async def test_an_advisory_read_answers_the_applied_stock_of_the_primary(
    cluster: Cluster, client: BooksDatabaseClient
) -> None:
    assert (await client.reserve("o1", {BOOK: 2}, epoch=1)).ok
    assert await client.read_advisory([BOOK, "b002"]) == await client.read_stock([BOOK, "b002"])
    with pytest.raises(grpcutil.Rejected) as refused:
        await client.read_advisory(["nope"])
    assert refused.value.code == "UNKNOWN_BOOK"


async def test_a_duplicate_request_id_gets_the_first_answer_and_changes_nothing(
    cluster: Cluster, client: BooksDatabaseClient
) -> None:
    await client.set_stock({BOOK: 3}, request_id="restock-1")
    await client.set_stock({BOOK: 9}, request_id="restock-1")  # a retry of the first
    assert (await client.read_stock([BOOK]))[BOOK].stock == 3
    first = await client.reserve("o1", {BOOK: 3}, epoch=1)
    again = await client.reserve("o1", {BOOK: 3}, epoch=1)
    assert first == again and first.ok
    assert (await client.read_stock([BOOK]))[BOOK].available == 0
    refused = await client.reserve("o2", {BOOK: 1, "b002": 1}, epoch=1)
    assert refused == Reservation(False, "out of stock: Designing Data-Intensive Applications")
    await cluster.converged()


async def test_a_stale_epoch_unknown_book_and_bad_quantity_are_refused_precisely(
    cluster: Cluster, client: BooksDatabaseClient
) -> None:
    assert (await client.reserve("o1", {BOOK: 1}, epoch=5)).ok
    before = await client.read_stock([BOOK])
    with pytest.raises(grpcutil.Rejected) as stale:
        await client.commit("o1", epoch=4)
    assert (stale.value.code, stale.value.message) == (
        "STALE_EPOCH",
        "epoch 4 is older than 5",
    )
    primary = cluster.primary()
    assert primary is not None
    async with grpcutil.channel(cluster.addresses[primary]) as channel:
        stub = pb_grpc.BooksDatabaseStub(channel)
        cases = [
            ("nope", 1, grpc.StatusCode.NOT_FOUND, "UNKNOWN_BOOK: no book with id 'nope'"),
            (BOOK, 0, grpc.StatusCode.INVALID_ARGUMENT, "BAD_REQUEST: quantity of 'b001' is 0"),
            (BOOK, -3, grpc.StatusCode.INVALID_ARGUMENT, "BAD_REQUEST: quantity of 'b001' is -3"),
        ]
        for book, quantity, code, message in cases:
            request = pb.ReserveRequest(
                request_id=f"r-{book}-{quantity}",
                txn_id="o9",
                epoch=9,
                items=[pb.StockLine(book_id=book, quantity=quantity)],
            )
            batch = pb.WriteBatch(ops=[pb.WriteOp(reserve=request)])
            (refused,) = (await stub.Write(batch, timeout=WAIT_S)).outcomes
            assert refused.error.status == code.value[0]
            assert f"{refused.error.code}: {refused.error.message}".startswith(message)
    assert await client.read_stock([BOOK]) == before
    assert cluster.replicas[primary].driver.replica.machine.max_epoch == 5


async def test_a_backup_names_the_primary(cluster: Cluster, client: BooksDatabaseClient) -> None:
    await client.read_stock([BOOK])
    primary = cluster.primary()
    backup = next(i for i in cluster.addresses if i != primary)
    async with grpcutil.channel(cluster.addresses[backup]) as channel:
        stub = pb_grpc.BooksDatabaseStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ReadStock(pb.ReadStockRequest(book_ids=[BOOK]), timeout=WAIT_S)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.value.details() == f"NOT_PRIMARY: primary is {primary}"
    status = await client.status(backup)
    assert (status.role, status.primary, status.replica_id) == ("backup", primary, backup)


async def test_all_three_stopped_and_restarted_lose_nothing_acknowledged(
    cluster: Cluster, client: BooksDatabaseClient
) -> None:
    await client.set_stock({BOOK: 7, "b002": 4})
    assert (await client.reserve("o1", {BOOK: 2, "b002": 4}, epoch=3)).ok
    await client.commit("o1", epoch=3)
    for i in (1, 2, 3):
        await cluster.kill(i)
    for i in (3, 1, 2):
        await cluster.start(i)
    stock = await client.read_stock([BOOK, "b002"])
    assert (stock[BOOK].stock, stock["b002"].stock, stock["b002"].available) == (5, 0, 0)
    with pytest.raises(grpcutil.Rejected, match="STALE_EPOCH"):  # the epoch is durable too
        await client.release("o2", epoch=2)
    await cluster.converged()


async def test_the_client_follows_a_backup_to_the_primary(
    cluster: Cluster, client: BooksDatabaseClient
) -> None:
    await client.read_stock([BOOK])
    primary = cluster.primary()
    client.primary = next(i for i in cluster.addresses if i != primary)  # a wrong guess
    assert (await client.reserve("o1", {BOOK: 1}, epoch=1)).ok
    assert client.primary == primary
