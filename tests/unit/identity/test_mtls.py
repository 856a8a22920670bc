"""Real grpc.aio servers on loopback with mutual TLS and the authorization policy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from queue_calls import enqueue

from bookstore.identity import certs, identities_of
from bookstore.identity.credentials import channel_credentials, server_credentials
from bookstore.identity.policy import policy_for, server_interceptors
from bookstore.order_queue.service import OrderQueueServicer
from bookstore.order_queue.store import QueueStore
from bookstore.pb import (
    checkout_pb2,
    checkout_pb2_grpc,
    common_pb2,
    queue_pb2,
    queue_pb2_grpc,
)
from bookstore.settings import Settings

SETTINGS = Settings()


class Participant(checkout_pb2_grpc.CheckoutParticipantServicer):
    """Just enough of a checkout service to exercise the streaming methods."""

    async def Session(self, requests: Any, context: Any) -> AsyncIterator[Any]:
        async for _ in requests:
            yield checkout_pb2.ParticipantBatch()

    async def Exchange(self, requests: Any, context: Any) -> common_pb2.Empty:
        async for _ in requests:
            pass
        return common_pb2.Empty()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tls")
    certs.ensure(directory, identities_of(SETTINGS))
    return directory


@pytest.fixture(scope="module")
def foreign_tls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA of its own issuing the very same names: must get nowhere."""
    directory = tmp_path_factory.mktemp("foreign-tls")
    certs.ensure(directory, identities_of(SETTINGS))
    return directory


@pytest.fixture
async def address(tls: Path, tmp_path: Path) -> AsyncIterator[str]:
    """The queue's and a checkout participant's servicers on one TLS server."""
    store = QueueStore(tmp_path / "queue.db", replica_ids=SETTINGS.order_executor_addresses)
    await store.open()
    server = grpc.aio.server(interceptors=server_interceptors(SETTINGS))
    queue_pb2_grpc.add_OrderQueueServicer_to_server(OrderQueueServicer(store), server)
    checkout_pb2_grpc.add_CheckoutParticipantServicer_to_server(Participant(), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(tls, "order-queue"))
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)
        await store.close()


def secure(address: str, directory: Path, name: str) -> grpc.aio.Channel:
    return grpc.aio.secure_channel(address, channel_credentials(directory, name))


def queue(channel: grpc.aio.Channel) -> queue_pb2_grpc.OrderQueueAsyncStub:
    return cast("queue_pb2_grpc.OrderQueueAsyncStub", queue_pb2_grpc.OrderQueueStub(channel))


def participant(channel: grpc.aio.Channel) -> checkout_pb2_grpc.CheckoutParticipantAsyncStub:
    return cast(
        "checkout_pb2_grpc.CheckoutParticipantAsyncStub",
        checkout_pb2_grpc.CheckoutParticipantStub(channel),
    )


def order(order_id: str) -> queue_pb2.EnqueueRequest:
    return queue_pb2.EnqueueRequest(
        order=queue_pb2.QueuedOrder(
            order_id=common_pb2.OrderId(value=order_id),
            items=[common_pb2.OrderItem(book_id="b1", title="A book", quantity=1)],
            customer_name="Ann",
        )
    )


async def test_allowed_callers_get_through(address: str, tls: Path) -> None:
    async with secure(address, tls, "orchestrator") as channel:
        reply = await enqueue(queue(channel), order("o1"), timeout=5)
        assert reply.sequence == 1
        answers = participant(channel).Session(iter([checkout_pb2.OrchestratorBatch()]))
        assert [a async for a in answers] == [checkout_pb2.ParticipantBatch()]
    async with secure(address, tls, "order-executor-3") as channel:
        epoch = await queue(channel).RegisterLeader(
            queue_pb2.RegisterLeaderRequest(replica_id=3), timeout=5
        )
        assert epoch.epoch == 1
    async with secure(address, tls, "fraud-detection") as channel:
        sent = participant(channel).Exchange(iter([checkout_pb2.PeerBatch()]), timeout=5)
        assert await sent == common_pb2.Empty()
    async with secure(address, tls, "launcher") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        status = await queue(channel).Status(common_pb2.Empty(), timeout=5)
        assert status.depth == 1


async def _denied(call: Any) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    return refused.value.details() or ""


async def test_a_wrong_identity_is_refused_naming_caller_and_method(
    address: str, tls: Path
) -> None:
    async with secure(address, tls, "order-executor-1") as channel:
        details = await _denied(enqueue(queue(channel), order("o2"), timeout=5))
        assert details == (
            "NOT_ALLOWED: spiffe://bookstore/order-executor/1"
            " may not call /bookstore.queue.OrderQueue/EnqueueBatch"
        )
        session = participant(channel).Session(iter([checkout_pb2.OrchestratorBatch()]))
        assert "may not call /bookstore.checkout.CheckoutParticipant/Session" in await _denied(
            session.read()
        )
    async with secure(address, tls, "orchestrator") as channel:
        details = await _denied(
            queue(channel).RegisterLeader(queue_pb2.RegisterLeaderRequest(replica_id=4))
        )
        assert "spiffe://bookstore/orchestrator may not call" in details
        exchange = participant(channel).Exchange(iter([checkout_pb2.PeerBatch()]), timeout=5)
        assert "CheckoutParticipant/Exchange" in await _denied(exchange)
        watch = queue(channel).WatchExecutions(queue_pb2.WatchRequest(), timeout=5)
        await watch.initial_metadata()  # the orchestrator may watch
        watch.cancel()
    async with secure(address, tls, "suggestions") as channel:
        watch = queue(channel).WatchExecutions(queue_pb2.WatchRequest(), timeout=5)
        assert "WatchExecutions" in await _denied(watch.read())


async def test_each_batch_call_is_open_to_its_own_callers_only(address: str, tls: Path) -> None:
    enqueues = queue_pb2.EnqueueBatchRequest(enqueues=[order("o5")])
    leader_ops = queue_pb2.LeaderBatchRequest()
    async with secure(address, tls, "order-executor-1") as channel:
        assert "may not call /bookstore.queue.OrderQueue/EnqueueBatch" in await _denied(
            queue(channel).EnqueueBatch(enqueues, timeout=5)
        )
        assert not (await queue(channel).LeaderBatch(leader_ops, timeout=5)).outcomes
    async with secure(address, tls, "orchestrator") as channel:
        (outcome,) = (await queue(channel).EnqueueBatch(enqueues, timeout=5)).outcomes
        assert outcome.reply.sequence == 1
        assert "may not call /bookstore.queue.OrderQueue/LeaderBatch" in await _denied(
            queue(channel).LeaderBatch(leader_ops, timeout=5)
        )


async def test_a_plaintext_client_fails(address: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await enqueue(queue(channel), order("o3"), timeout=3)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_certificate_of_an_unknown_ca_fails(address: str, foreign_tls: Path) -> None:
    async with secure(address, foreign_tls, "orchestrator") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await enqueue(queue(channel), order("o4"), timeout=3)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_client_without_a_certificate_fails(address: str, tls: Path) -> None:
    trusting = grpc.ssl_channel_credentials(root_certificates=(tls / "ca.pem").read_bytes())
    async with grpc.aio.secure_channel(address, trusting) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await queue(channel).Status(common_pb2.Empty(), timeout=3)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE


def test_every_rpc_of_every_service_has_a_policy_entry() -> None:
    from bookstore.pb import books_database_pb2, executor_pb2, payment_pb2

    policy = policy_for(SETTINGS)
    for module in (checkout_pb2, queue_pb2, executor_pb2, books_database_pb2, payment_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                name = f"/{service.full_name}/{method.name}"
                assert name in policy, f"{name} has no entry: it would be refused to everyone"
    executors = policy["/bookstore.queue.OrderQueue/Dequeue"]
    assert executors == {f"spiffe://bookstore/order-executor/{i}" for i in (1, 2, 3, 4)}
    # Only the coordinator (the leader executor) moves stock and money.
    assert policy["/bookstore.books.BooksDatabase/Write"] == executors
    assert policy["/bookstore.payment.Payment/Apply"] == executors
    tv = {"spiffe://bookstore/transaction-verification"}
    assert policy["/bookstore.payment.Payment/TokenizeBatch"] == tv


def test_every_method_entry_of_the_policy_names_an_rpc_that_exists() -> None:
    from bookstore.pb import books_database_pb2, executor_pb2, payment_pb2

    modules = (checkout_pb2, queue_pb2, executor_pb2, books_database_pb2, payment_pb2)
    rpcs = {
        f"/{service.full_name}/{method.name}"
        for module in modules
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    entries = {name for name in policy_for(SETTINGS) if name.startswith("/")}
    assert entries - rpcs == set()  # an RPC dropped from a proto leaves no entry behind


def test_tls_off_installs_no_check() -> None:
    assert server_interceptors(Settings(tls=False)) == []


async def test_an_executor_may_register_and_lease_only_as_itself(address: str, tls: Path) -> None:
    async with secure(address, tls, "order-executor-2") as channel:
        details = await _denied(
            queue(channel).RegisterLeader(queue_pb2.RegisterLeaderRequest(replica_id=3), timeout=5)
        )
        assert details == (
            "NOT_ALLOWED: spiffe://bookstore/order-executor/2"
            " may not speak for order-executor replica 3"
        )
        lease = queue_pb2.LeaseRequest(replica_id=4, epoch=1, lease_id="l")
        for call in (
            queue(channel).Dequeue(queue_pb2.DequeueRequest(replica_id=4, epoch=1), timeout=5),
            queue(channel).RenewLease(lease, timeout=5),
        ):
            assert "may not speak for order-executor replica 4" in await _denied(call)
        # A complete in a LeaderBatch is refused alone, with PERMISSION_DENIED.
        batch = queue_pb2.LeaderBatchRequest(ops=[queue_pb2.LeaderOp(complete=lease)])
        (refused,) = (await queue(channel).LeaderBatch(batch, timeout=5)).outcomes
        assert refused.error.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
        assert refused.error.details == (
            "NOT_ALLOWED: spiffe://bookstore/order-executor/2"
            " may not speak for order-executor replica 4"
        )
        epoch = await queue(channel).RegisterLeader(
            queue_pb2.RegisterLeaderRequest(replica_id=2), timeout=5
        )
        assert epoch.epoch >= 1
