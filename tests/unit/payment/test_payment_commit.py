"""The coordinator's state machine driven over real gRPC: the payment service and
the queue's decision log in process, the books participant in memory."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
import pytest
from payment_harness import Queue
from queue_calls import log_decision
from store_calls import enqueue
from test_payment_service import authorized, captured, tokenized, voided

from bookstore import grpcutil
from bookstore.commitment.coordinator import Action, Coordinator, Kind, Phase, Timings
from bookstore.commitment.participant import Decision, MemoryStore, Participant, TxnError
from bookstore.order_queue.state import Item
from bookstore.payment.service import PaymentServicer
from bookstore.pb import common_pb2, payment_pb2, payment_pb2_grpc, queue_pb2, queue_pb2_grpc

TIMINGS = Timings(vote_timeout=1.0, resend_interval=0.2)
AMOUNT = 8997


@dataclass
class Links:
    """The adapter's side: a stub per participant and the decision log."""

    payment: payment_pb2_grpc.PaymentAsyncStub
    queue: queue_pb2_grpc.OrderQueueAsyncStub
    token: str
    books: Participant[int] = field(default_factory=lambda: Participant(MemoryStore()))
    now: float = 0.0

    async def perform(self, c: Coordinator, a: Action) -> list[Action]:
        """Do one action; feed its answer back. A refusal is the peer's named code."""
        try:
            return await self._perform(c, a)
        except grpc.aio.AioRpcError as exc:
            error = grpcutil.translate(a.participant or "order-queue", exc)
            if isinstance(error, grpcutil.Rejected):
                return c.on_refused(a.participant, error.code, error.message, self.now)
            return []  # outcome unknown: the coordinator resends on a tick
        except TxnError as exc:
            return c.on_refused(a.participant, exc.code, exc.message, self.now)

    async def _perform(self, c: Coordinator, a: Action) -> list[Action]:
        txn = common_pb2.OrderId(value=c.txn_id)
        if a.kind is Kind.READ_DECISION:
            found = await self.queue.GetDecision(txn)
            logged = Decision(found.decision) if found.decision else None
            return c.on_decision_read(logged, found.reason, self.now)
        if a.kind is Kind.LOG_DECISION:
            assert a.decision is not None
            request = queue_pb2.LogDecisionRequest(
                order_id=txn, decision=a.decision.value, epoch=c.epoch, reason=a.reason
            )
            reply = await log_decision(self.queue, request)
            return c.on_logged(Decision(reply.decision), reply.reason, self.now)
        if a.kind is Kind.PREPARE and a.participant == "books":
            vote = self.books.prepare(c.txn_id, c.epoch, 2, lambda n: "")
            return c.on_vote("books", vote.yes, vote.reason, self.now)
        if a.kind is Kind.PREPARE:
            authorize = payment_pb2.AuthorizeRequest(
                txn_id=txn, token=self.token, amount_cents=AMOUNT, currency="EUR", epoch=c.epoch
            )
            got = await authorized(self.payment, authorize)
            return c.on_vote("payment", got.approved, got.reason, self.now)
        if a.kind in (Kind.COMMIT, Kind.ABORT) and a.participant == "books":
            if a.kind is Kind.COMMIT:
                self.books.commit(c.txn_id, c.epoch)
            else:
                self.books.abort(c.txn_id, c.epoch, a.reason)
            return c.on_ack("books", self.now)
        if a.kind in (Kind.COMMIT, Kind.ABORT):
            request = payment_pb2.TxnRequest(txn_id=txn, epoch=c.epoch, reason=a.reason)
            send = captured if a.kind is Kind.COMMIT else voided
            await send(self.payment, request)
            return c.on_ack("payment", self.now)
        return []  # FINISHED, FAILED: the executor's business

    async def run(self, c: Coordinator, steps: int = 200) -> None:
        """Drive `c` to its end on fake time (an idle round advances it)."""
        actions = c.start(self.now)
        for _ in range(steps):
            if c.finished:
                return
            produced = [out for a in actions for out in await self.perform(c, a)]
            if not produced:
                self.now += 0.25
                produced = c.on_tick(self.now)
            actions = produced
        raise AssertionError(f"not finished after {steps} steps: {c.phase}")


async def links_for(
    number: str,
    stub: payment_pb2_grpc.PaymentAsyncStub,
    queue: Queue,
) -> Links:
    card = payment_pb2.TokenizeRequest(number=number, expiration="12/39", cvv="123")
    token = (await tokenized(stub, card)).token
    return Links(stub, queue.stub, token)


async def payment_state(
    servicer: PaymentServicer, stub: payment_pb2_grpc.PaymentAsyncStub
) -> tuple[str, int]:
    txn = await servicer.call(servicer.ledger.transaction, "o1")
    assert txn is not None
    captured = (await stub.Status(common_pb2.Empty())).captured_cents
    return txn.record.state.value, captured


@pytest.mark.parametrize(
    ("number", "decision", "reason", "state", "captured"),
    [
        ("4242424242424242", Decision.COMMIT, "", "committed", AMOUNT),
        ("4000000000000002", Decision.ABORT, "payment: card declined", "aborted", 0),
        ("4000000000009995", Decision.ABORT, "payment: insufficient funds", "aborted", 0),
        ("4000000000000119", Decision.ABORT, "no vote from payment in time", "aborted", 0),
    ],
)
async def test_each_test_card_ends_in_one_logged_outcome_at_every_participant(
    servicer: PaymentServicer,
    stub: payment_pb2_grpc.PaymentAsyncStub,
    queue: Queue,
    number: str,
    decision: Decision,
    reason: str,
    state: str,
    captured: int,
) -> None:
    await enqueue(queue.store, "o1", [Item("b001", "Book", 2)], "Ann")
    links = await links_for(number, stub, queue)
    epoch = await queue.store.register_leader(1)
    c = Coordinator("o1", epoch, ("books", "payment"), TIMINGS)
    await links.run(c)
    assert (c.phase, c.decision, c.reason) == (Phase.DONE, decision, reason)
    logged = await queue.store.get_decision("o1")
    assert logged is not None and (logged.decision, logged.reason) == (decision.value, reason)
    assert await payment_state(servicer, stub) == (state, captured)
    books = links.books.store.get("o1")
    assert books is not None and books.state.value == state


async def test_a_deposed_leader_is_fenced_and_the_next_one_commits_once(
    servicer: PaymentServicer,
    stub: payment_pb2_grpc.PaymentAsyncStub,
    queue: Queue,
) -> None:
    store = queue.store
    await enqueue(store, "o1", [Item("b001", "Book", 2)], "Ann")
    links = await links_for("4242424242424242", stub, queue)
    old = Coordinator("o1", await store.register_leader(1), ("books", "payment"), TIMINGS)
    actions = old.start(0.0)
    while not any(a.kind is Kind.LOG_DECISION for a in actions):  # both prepared, yes
        actions = [out for a in actions for out in await links.perform(old, a)]
    new = Coordinator("o1", await store.register_leader(2), ("books", "payment"), TIMINGS)
    for a in actions:  # the old leader wakes and tries to log COMMIT: refused
        await links.perform(old, a)
    assert old.phase is Phase.FENCED and await store.get_decision("o1") is None
    await links.run(new)  # nothing logged: it re-prepares at its epoch and commits
    assert (new.phase, new.decision) == (Phase.DONE, Decision.COMMIT)
    assert await payment_state(servicer, stub) == ("committed", AMOUNT)
    with pytest.raises(grpc.aio.AioRpcError) as info:  # the old epoch changes nothing
        await voided(stub, payment_pb2.TxnRequest(txn_id=common_pb2.OrderId(value="o1"), epoch=1))
    assert (info.value.details() or "").startswith("STALE_EPOCH: ")
