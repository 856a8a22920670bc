"""Service identity against the whole system started by `bookstore up` (TLS on):
who may call what, checked by the real services with the certificates the
launcher made; checkouts keep being executed throughout."""

from __future__ import annotations

import asyncio
import stat
import time
from typing import Any, cast

import grpc
import httpx
import pytest
from checkout_requests import course_page_request
from harness import System
from queue_calls import enqueue
from tls_support import plaintext, transport

from bookstore import grpcutil, health, healthcheck
from bookstore.pb import checkout_pb2_grpc, common_pb2, queue_pb2, queue_pb2_grpc

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

METHODS = (
    "/bookstore.queue.OrderQueue/EnqueueBatch",
    "/bookstore.checkout.CheckoutParticipant/Session",
)


def _executed_checkout(system: System) -> None:
    """One checkout, approved and then executed (the module's timeout is the backstop)."""
    body = course_page_request()
    with httpx.Client(base_url=system.base_url, timeout=30.0) as client:
        approved = client.post("/checkout", json=body).json()
        assert approved["status"] == "Order Approved", approved
        order_id = approved["orderId"]
        state = approved["execution"]["state"]
        while state != "executed":
            time.sleep(0.05)
            state = client.get(f"/orders/{order_id}").json()["execution"]["state"]


def _order(oid: str) -> queue_pb2.EnqueueRequest:
    item = common_pb2.OrderItem(book_id="b1", title="A book", quantity=1)
    return queue_pb2.EnqueueRequest(
        order=queue_pb2.QueuedOrder(order_id=common_pb2.OrderId(value=oid), items=[item])
    )


async def _code(call: Any) -> tuple[grpc.StatusCode, str]:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    raise AssertionError("the call was not refused")


async def _attempts(system: System, via: grpcutil.Transport) -> list[tuple[grpc.StatusCode, str]]:
    """Enqueue, and open a checkout Session, with `via`'s identity (or none)."""
    queue_channel = via.channel(system.address("ORDER_QUEUE_ADDRESS"))
    tv_channel = via.channel(system.address("TRANSACTION_VERIFICATION_ADDRESS"))
    try:
        queue = cast(
            "queue_pb2_grpc.OrderQueueAsyncStub", queue_pb2_grpc.OrderQueueStub(queue_channel)
        )
        tv = cast(
            "checkout_pb2_grpc.CheckoutParticipantAsyncStub",
            checkout_pb2_grpc.CheckoutParticipantStub(tv_channel),
        )
        # The session is opened without writing: the refusal arrives as soon as the
        # call does. A write racing the server's abort would turn its status into
        # INTERNAL "Internal error from Core" on the client (grpc/grpc#36066).
        session = tv.Session(timeout=2.0)
        return [
            await _code(enqueue(queue, _order("not-the-orchestrator"), timeout=2.0)),
            await _code(session.read()),
        ]
    finally:
        await queue_channel.close()
        await tv_channel.close()


async def _refusals(system: System, via: grpcutil.Transport) -> list[tuple[grpc.StatusCode, str]]:
    """`_attempts` with a certificate, once both calls reached the server: a connection
    that failed on a busy machine (UNAVAILABLE, the call never arrived) is tried again."""
    while True:
        found = await _attempts(system, via)
        if grpc.StatusCode.UNAVAILABLE not in {code for code, _ in found}:
            return found


def test_the_launcher_made_a_ca_and_a_key_per_service_readable_by_the_owner_only(
    system: System,
) -> None:
    directory = system.data_dir / "tls"
    for name in ("ca", "orchestrator", "order-queue", "order-executor-4", "launcher"):
        assert (directory / f"{name}.pem").is_file()
        assert stat.S_IMODE((directory / f"{name}.key").stat().st_mode) == 0o600
    assert "BOOKSTORE_TLS is off" not in system.log()


def test_without_a_certificate_nothing_gets_through(system: System) -> None:
    _executed_checkout(system)
    for code, _ in asyncio.run(_attempts(system, plaintext())):
        assert code == grpc.StatusCode.UNAVAILABLE  # the TLS handshake never completes
    problem = asyncio.run(
        health.grpc_problem(system.address("ORDER_QUEUE_ADDRESS"), 2.0, plaintext())
    )
    assert problem is not None and "UNAVAILABLE" in problem
    _executed_checkout(system)


def test_another_services_certificate_may_not_enqueue_or_open_a_session(system: System) -> None:
    for name in ("fraud-detection", "order-executor-2"):
        refusals = asyncio.run(_refusals(system, transport(system.env, name)))
        for (code, details), method in zip(
            refusals,
            (
                "/bookstore.queue.OrderQueue/EnqueueBatch",
                "/bookstore.checkout.CheckoutParticipant/Session",
            ),
            strict=True,
        ):
            assert code == grpc.StatusCode.PERMISSION_DENIED
            assert details.startswith("NOT_ALLOWED: spiffe://bookstore/") and method in details
        _executed_checkout(system)
    assert "refused call method=/bookstore.queue.OrderQueue/EnqueueBatch" in system.log()


def test_the_container_health_check_presents_the_services_own_certificate(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable, value in system.env.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.setenv("BOOKSTORE_BIND_HOST", "127.0.0.1")
    assert healthcheck.main(["order-queue"]) == 0
    assert healthcheck.main(["order-executor", "--replica-id", "3"]) == 0
    monkeypatch.setenv("BOOKSTORE_DATA_DIR", str(system.data_dir / "elsewhere"))
    assert healthcheck.main(["order-queue"]) == 1  # no certificate there
