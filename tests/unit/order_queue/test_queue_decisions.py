"""The coordinator log in the queue: first decision wins, durable, fenced by epoch."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from queue_calls import log_decision
from queue_fakes import FakeClock

from bookstore.order_queue.state import BadRequest, Item, StaleEpoch, UnknownOrder
from bookstore.order_queue.store import QueueStore
from bookstore.pb import common_pb2, queue_pb2, queue_pb2_grpc


async def leader_with_orders(store: QueueStore, *order_ids: str) -> int:
    for order_id in order_ids:
        await store.enqueue(order_id, [Item("b001", "Book", 1)], "Ann")
    return await store.register_leader(1)


async def test_the_first_decision_wins_and_survives_a_reopen(
    store: QueueStore, db_path: Path, clock: FakeClock
) -> None:
    epoch = await leader_with_orders(store, "o1")
    first = await store.log_decision("o1", "commit", epoch, "")
    again = await store.log_decision("o1", "abort", epoch, "payment: card declined")
    assert again == first and first.decision == "commit" and first.epoch == epoch
    await store.close()
    reopened = QueueStore(db_path, clock=clock)
    await reopened.open()
    try:
        assert await reopened.get_decision("o1") == first
        assert await reopened.get_decision("o2") is None
    finally:
        await reopened.close()


async def test_a_deposed_leaders_decision_is_refused_and_not_logged(store: QueueStore) -> None:
    old = await leader_with_orders(store, "o1")
    await store.register_leader(2)
    with pytest.raises(StaleEpoch, match=r"^STALE_EPOCH: current epoch is 2$"):
        await store.log_decision("o1", "commit", old, "")
    assert await store.get_decision("o1") is None


@pytest.mark.parametrize(
    ("order_id", "decision", "epoch", "reason", "error"),
    [
        ("o1", "maybe", 1, "", BadRequest),
        ("o1", "commit", 0, "", BadRequest),
        ("o1", "commit", 9, "", BadRequest),  # never granted
        ("o1", "abort", 1, "x" * 513, BadRequest),
        ("nope", "commit", 1, "", UnknownOrder),
    ],
)
async def test_malformed_or_unknown_decisions_change_nothing(
    store: QueueStore, order_id: str, decision: str, epoch: int, reason: str, error: type
) -> None:
    await leader_with_orders(store, "o1")
    with pytest.raises(error):
        await store.log_decision(order_id, decision, epoch, reason)
    assert await store.get_decision(order_id) is None


async def test_decided_orders_are_pending_until_executed(store: QueueStore) -> None:
    epoch = await leader_with_orders(store, "o1", "o2")
    await store.log_decision("o1", "commit", epoch, "")
    await store.log_decision("o2", "abort", epoch, "books: out of stock")
    taken = await store.dequeue(1, epoch, 0)
    assert taken is not None
    await store.complete(1, epoch, taken[1].lease_id, taken[0].order_id)
    pending, recent = await store.list_decisions(10)
    assert [d.order_id for d in pending] == [o for o in ("o1", "o2") if o != taken[0].order_id]
    assert [d.order_id for d in recent] == ["o2", "o1"]
    assert recent[0].reason == "books: out of stock"


def log_request(order_id: str, decision: str, epoch: int) -> queue_pb2.LogDecisionRequest:
    return queue_pb2.LogDecisionRequest(
        order_id=common_pb2.OrderId(value=order_id), decision=decision, epoch=epoch
    )


async def test_the_log_over_grpc(
    store: QueueStore, stub: queue_pb2_grpc.OrderQueueAsyncStub
) -> None:
    epoch = await leader_with_orders(store, "o1")
    none = await stub.GetDecision(common_pb2.OrderId(value="o1"))
    assert (none.order_id.value, none.decision) == ("o1", "")
    logged = await log_decision(stub, log_request("o1", "commit", epoch))
    assert (logged.decision, logged.epoch) == ("commit", epoch) and logged.decided_at
    assert await stub.GetDecision(common_pb2.OrderId(value="o1")) == logged
    listed = await stub.ListDecisions(queue_pb2.ListDecisionsRequest(limit=5))
    assert list(listed.pending) == [logged] and list(listed.recent) == [logged]


@pytest.mark.parametrize(
    ("request_", "code", "prefix"),
    [
        (log_request("o1", "commit", 1), grpc.StatusCode.FAILED_PRECONDITION, "STALE_EPOCH: "),
        (log_request("o1", "yes", 2), grpc.StatusCode.INVALID_ARGUMENT, "BAD_REQUEST: "),
        (log_request("zz", "abort", 2), grpc.StatusCode.NOT_FOUND, "UNKNOWN_ORDER: "),
    ],
)
async def test_refusals_over_grpc_are_precise(
    store: QueueStore,
    stub: queue_pb2_grpc.OrderQueueAsyncStub,
    request_: queue_pb2.LogDecisionRequest,
    code: grpc.StatusCode,
    prefix: str,
) -> None:
    await leader_with_orders(store, "o1")
    await store.register_leader(1)  # epoch 2
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await log_decision(stub, request_)
    assert info.value.code() == code
    assert (info.value.details() or "").startswith(prefix)
    assert (await stub.GetDecision(request_.order_id)).decision == ""


async def test_racing_decisions_in_one_group_commit_agree_on_the_first(store: QueueStore) -> None:
    epoch = await leader_with_orders(store, "o1")
    answers = await asyncio.gather(
        store.log_decision("o1", "abort", epoch, "no vote from payment in time"),
        store.log_decision("o1", "commit", epoch, ""),
    )
    assert answers[0] == answers[1] == await store.get_decision("o1")
    assert answers[0].decision == "abort"
