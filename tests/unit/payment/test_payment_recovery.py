"""A payment service restarted with prepared txns asks the queue's decision log."""

from __future__ import annotations

import asyncio

from payment_harness import Queue
from store_calls import enqueue, log_decision

from bookstore.commitment.participant import Decision, State
from bookstore.order_queue.state import Item
from bookstore.payment.cards import card_info
from bookstore.payment.ledger import Authorization
from bookstore.payment.recovery import queue_decisions, recover, resolve_in_doubt
from bookstore.payment.service import PaymentServicer, count_in_doubt
from bookstore.telemetry import metrics


def prepare(servicer: PaymentServicer, *txn_ids: str) -> None:
    ledger = servicer.ledger
    token = ledger.tokenize(card_info("4242424242424242", "12/39", "123"))
    for txn_id in txn_ids:
        assert ledger.authorize(txn_id, Authorization(token, 700, "EUR"), 1).yes


def state_of(servicer: PaymentServicer, txn_id: str) -> State:
    view = servicer.ledger.transaction(txn_id)
    assert view is not None
    return view.record.state


async def test_logged_decisions_are_applied_and_the_rest_keep_waiting(
    servicer: PaymentServicer,
) -> None:
    prepare(servicer, "c", "a", "w")
    logged = {"c": Decision.COMMIT, "a": Decision.ABORT}
    asked: list[str] = []

    async def source(txn_id: str) -> Decision | None:
        asked.append(txn_id)
        return logged.get(txn_id)

    assert await resolve_in_doubt(servicer, source, ["c", "a", "w"]) == ["w"]
    assert [state_of(servicer, t) for t in "caw"] == [
        State.COMMITTED,
        State.ABORTED,
        State.PREPARED,
    ]
    assert asked == ["c", "a", "w"]
    assert servicer.ledger.status().captured_cents == 700


async def test_recovery_asks_again_until_a_decision_is_logged(servicer: PaymentServicer) -> None:
    prepare(servicer, "o1")
    answers: list[Decision | None] = [None, None, Decision.COMMIT]

    async def source(txn_id: str) -> Decision | None:
        return answers.pop(0)

    await recover(servicer, source, interval_s=0.0)
    assert answers == [] and state_of(servicer, "o1") is State.COMMITTED


async def test_recovery_against_the_real_queue(servicer: PaymentServicer, queue: Queue) -> None:
    prepare(servicer, "o1", "o2")
    for order_id in ("o1", "o2"):
        await enqueue(queue.store, order_id, [Item("b001", "Book", 1)], "Ann")
    epoch = await queue.store.register_leader(1)
    await log_decision(queue.store, "o1", "abort", epoch, "books: out of stock")
    source = queue_decisions(queue.stub, timeout_s=2.0)
    assert await resolve_in_doubt(servicer, source, ["o1", "o2"]) == ["o2"]
    assert state_of(servicer, "o1") is State.ABORTED
    await queue.server.stop(None)  # an unreachable log is no decision: keep waiting
    assert await resolve_in_doubt(servicer, source, ["o2"]) == ["o2"]


async def test_the_in_doubt_gauge_counts_the_prepared_txns(servicer: PaymentServicer) -> None:
    prepare(servicer, "x", "y")
    counting = asyncio.create_task(count_in_doubt(servicer, interval_s=0.01))
    try:
        for _ in range(500):  # the counter's own pace: a read every 0.01 s
            if metrics.REGISTRY.get_sample_value("bookstore_in_doubt_transactions") == 2:
                break
            await asyncio.sleep(0.01)
    finally:
        counting.cancel()
        await asyncio.gather(counting, return_exceptions=True)
    assert metrics.REGISTRY.get_sample_value("bookstore_in_doubt_transactions") == 2
