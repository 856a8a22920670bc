"""The coordinator log in the queue: first decision wins, durable, fenced by epoch."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
import store_calls
from queue_calls import log_decision
from queue_fakes import FakeClock, Wall
from store_calls import complete, dequeue, enqueue

from bookstore.order_queue.state import BadRequest, Item, StaleEpoch, UnknownOrder
from bookstore.order_queue.store import QueueStore
from bookstore.pb import common_pb2, queue_pb2, queue_pb2_grpc


async def leader_with_orders(store: QueueStore, *order_ids: str) -> int:
    for order_id in order_ids:
        await enqueue(store, order_id, [Item("b001", "Book", 1)], "Ann")
    return await store.register_leader(1)


async def test_the_first_decision_wins_and_survives_a_reopen(
    store: QueueStore, db_path: Path, clock: FakeClock
) -> None:
    epoch = await leader_with_orders(store, "o1")
    first = await store_calls.log_decision(store, "o1", "commit", epoch, "")
    again = await store_calls.log_decision(store, "o1", "abort", epoch, "payment: card declined")
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
        await store_calls.log_decision(store, "o1", "commit", old, "")
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
        await store_calls.log_decision(store, order_id, decision, epoch, reason)
    assert await store.get_decision(order_id) is None


async def test_a_decision_is_the_commit_point_and_stays_pending_until_finished(
    store: QueueStore,
) -> None:
    epoch = await leader_with_orders(store, "o1", "o2")
    taken = await dequeue(store, 1, epoch, 0)
    assert taken is not None and taken[0].order_id == "o1"
    async with store.subscribe() as feed:
        await store_calls.log_decision(store, "o1", "commit", epoch, "", amount_cents=2497)
        await store_calls.log_decision(
            store, "o2", "abort", epoch, "books: out of stock", 0, "out of stock"
        )
        executed, rejected = feed.get_nowait(), feed.get_nowait()
    # Both orders are decided: executed or rejected at once, out of the queue.
    assert executed is not None and rejected is not None
    assert (executed.order_id, executed.outcome, executed.amount_cents) == ("o1", "executed", 2497)
    assert (executed.executor, executed.epoch) == (1, epoch)
    assert (rejected.order_id, rejected.outcome) == ("o2", "rejected")
    assert rejected.reason == "out of stock"  # the customer's, not the coordinator's
    assert (await store.get_order("o1")).state == "executed"
    assert await dequeue(store, 1, epoch, 0) is None
    assert store.state.depth == 0 and store.state.executed == 2
    pending, recent = await store.list_decisions(10)
    assert [d.order_id for d in pending] == ["o1", "o2"]  # until the participants acked
    assert [d.order_id for d in recent] == ["o2", "o1"]
    assert recent[0].reason == "books: out of stock"
    # The leader's completion after phase 2 finishes the decision: no second execution.
    record, duplicate = await complete(store, 1, epoch, taken[1].lease_id, "o1")
    assert record == executed and not duplicate
    assert (await complete(store, 1, epoch, taken[1].lease_id, "o1")) == (executed, True)
    pending, _ = await store.list_decisions(10)
    assert [d.order_id for d in pending] == ["o2"]
    assert store.state.executed == 2


async def test_a_repeated_decision_records_no_second_execution(store: QueueStore) -> None:
    epoch = await leader_with_orders(store, "o1")
    async with store.subscribe() as feed:
        await store_calls.log_decision(store, "o1", "commit", epoch, "")
        await store.register_leader(1)  # a new epoch: the next leader's recovery
        await store_calls.log_decision(store, "o1", "commit", epoch + 1, "")
        first = feed.get_nowait()
        assert feed.empty()
    assert first is not None and first.amount_cents == 0 and first.epoch == epoch


async def test_an_unfinished_decisions_order_outlives_the_retention(
    db_path: Path, clock: FakeClock
) -> None:
    wall = Wall()
    store = QueueStore(db_path, sweep_interval_s=0, retention_s=60, clock=clock, wall_clock=wall)
    await store.open()
    try:
        epoch = await leader_with_orders(store, "o1", "o2")
        await store_calls.log_decision(store, "o1", "commit", epoch, "")
        await store_calls.log_decision(store, "o2", "commit", epoch, "")
        await complete(store, 1, epoch, "", "o2")
        wall.now += timedelta(hours=1)
        assert await store.disk.sweep() == 1  # o2 only: o1's decision is still due
        assert (await store.get_order("o1")).state == "executed"
        with pytest.raises(UnknownOrder):
            await store.get_order("o2")
        pending, _ = await store.list_decisions(10)
        assert [d.order_id for d in pending] == ["o1"]
    finally:
        await store.close()


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
        store_calls.log_decision(store, "o1", "abort", epoch, "no vote from payment in time"),
        store_calls.log_decision(store, "o1", "commit", epoch, ""),
    )
    assert answers[0] == answers[1] == await store.get_decision("o1")
    assert answers[0].decision == "abort"
