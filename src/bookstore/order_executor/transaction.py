"""One order's two-phase commit, carried out: the adapter around `commitment.Coordinator`.

The leader executor coordinates each order as one transaction (txn id = order
id, epoch = the leader's queue epoch) between two participants:

- the books database: prepare = reserve the copies, commit = take them,
  abort = release them (operations of its Write);
- payment: prepare = authorize the amount, commit = capture, abort = void
  (operations of its Apply).

The decision goes to the queue's decision log (log_decision) before any commit
or abort is sent; whatever the log answers is the decision. It is also the
order's commit point: the queue records the order executed (or rejected) with
it, and the customer is answered then; the commits that follow finish it. `TwoPhaseCommit.run`
performs every action the coordinator returns (one RPC in flight per action
and participant), feeds the answers back, ticks it every resend interval, and
returns how the transaction ended. Many orders run at once, each in its own
`run`: the participants and the queue batch their disk writes (group commit),
so concurrent transactions share fsyncs.

Answers, as the coordinator's events:
- a refusal with a named code (STALE_EPOCH, ALREADY_ABORTED, ...: the
  participant rules' codes, the same at both participants) -> `on_refused`;
  STALE_EPOCH anywhere means a newer leader owns the order: FENCED;
- a participant that cannot be reached -> nothing (the resend and the vote
  timeout handle it); except payment's DEADLINE_EXCEEDED on an authorize,
  which is its "no" (the processor did not answer: the order is not paid).

The operations of concurrent transactions travel together, each participant's
in its batch call (Write, Apply) through a `Coalescer`; each operation's
outcome comes back as its own reply or error, so the answers above hold
operation by operation.

An `Observer` is told each message as it is about to be sent and each answer
as it arrives (by default nobody listens); the message waits for it. Tests use
one to crash the leader at a point of the protocol (crash.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import grpc

from bookstore import grpcutil
from bookstore.batching import Coalescer
from bookstore.books_database.client import BooksDatabaseClient
from bookstore.commitment.coordinator import Action, Coordinator, Kind, Phase, Timings
from bookstore.commitment.participant import Decision
from bookstore.commitment.trace import DECISION_LOG, CommitmentTrace
from bookstore.order_queue.client import LeaderCalls
from bookstore.pb import common_pb2, payment_pb2, payment_pb2_grpc, queue_pb2, queue_pb2_grpc
from bookstore.settings import Settings
from bookstore.telemetry import metrics, tracing

log = logging.getLogger(__name__)

BOOKS = "books-database"
PAYMENT = "payment"
CURRENCY = "EUR"
NO_ANSWER = "the card processor did not answer in time"

# What an answer does to the coordinator: (coordinator, now) -> its next actions.
Feed = Callable[[Coordinator, float], list[Action]]


def _nothing(coordinator: Coordinator, now: float) -> list[Action]:
    return []


@dataclass(frozen=True)
class Txn:
    order_id: str
    epoch: int
    items: Mapping[str, int]  # book id -> quantity
    token: str
    amount_cents: int
    read_log: bool = True  # start by reading the decision log (rule 1)


@dataclass(frozen=True)
class TxnOutcome:
    decision: Decision | None  # None: fenced or failed, the order is not completed
    reason: str = ""  # the coordinator's reason (an abort's cause)
    fenced: bool = False

    @property
    def customer_reason(self) -> str:
        return customer_reason(self.reason)


def customer_reason(reason: str) -> str:
    """The reason a customer reads for an abort's logged reason.

    "books-database: out of stock: X" -> "out of stock: X";
    "payment: card declined" -> "payment declined: card declined".
    """
    who, _, why = reason.partition(": ")
    if who == BOOKS and why.startswith("out of stock"):
        return why
    if who == PAYMENT:
        return f"payment declined: {why}"
    if reason.startswith("no vote from") and BOOKS not in reason:
        return f"payment declined: {NO_ANSWER}"
    return f"not executed: {reason}"


@dataclass(frozen=True)
class Step:
    """One message of an order's transaction: the coordinator's action `kind` to
    `participant` ("" for the decision log)."""

    order_id: str
    kind: Kind
    participant: str


class Observer:
    """Told the steps of every transaction; by default nobody listens."""

    async def sending(self, step: Step) -> None:
        """The step's message is about to be sent; it waits for this to return."""

    async def answered(self, step: Step) -> None:
        """Its answer arrived (a vote, the log's decision, an ack; not a refusal),
        before the coordinator hears it."""


class TwoPhaseCommit:
    """Runs transactions against the books database, payment and the decision log."""

    def __init__(
        self,
        settings: Settings,
        queue: queue_pb2_grpc.OrderQueueAsyncStub,
        observer: Observer | None = None,
        trace: CommitmentTrace | None = None,
        leader_calls: LeaderCalls | None = None,
    ) -> None:
        """`leader_calls`: the LeaderBatch calls the decisions share with the executor's
        completions (default: calls of their own on `queue`)."""
        # Every message of every transaction, for the cluster view's commitment diagram.
        self.trace = trace if trace is not None else CommitmentTrace()
        self.rpc_timeout_s = settings.rpc_timeout_s
        self.timings = Timings(vote_timeout=2 * settings.rpc_timeout_s, resend_interval=0.5)
        self.queue = queue
        self.leader_calls = leader_calls or LeaderCalls(lambda: queue, settings.rpc_timeout_s)
        self.books = BooksDatabaseClient(
            settings.books_database_addresses,
            deadline_s=settings.rpc_timeout_s,
            rpc_timeout_s=settings.rpc_timeout_s / 2,
        )
        self._payment_channel = grpcutil.channel(settings.payment_address)
        self.payment = cast(
            "payment_pb2_grpc.PaymentAsyncStub", payment_pb2_grpc.PaymentStub(self._payment_channel)
        )
        self._payments: Coalescer[payment_pb2.PaymentOperation, payment_pb2.PaymentOutcome] = (
            Coalescer(self._apply_payments, "payment batch", service=PAYMENT)
        )
        self.observer = observer or Observer()

    async def close(self) -> None:
        await self.books.close()
        await self._payments.close()
        await self._payment_channel.close()

    async def run(self, txn: Txn) -> TxnOutcome:
        loop = asyncio.get_running_loop()
        coordinator = Coordinator(txn.order_id, txn.epoch, (BOOKS, PAYMENT), self.timings)
        actions = coordinator.start(loop.time())
        if not txn.read_log:  # a first delivery: no decision can be logged yet
            actions = coordinator.on_decision_read(None, "", loop.time())
        inflight: dict[tuple[Kind, str], asyncio.Task[Feed]] = {}
        try:
            while True:
                for action in actions:
                    self._dispatch(action, txn, inflight)
                if coordinator.finished:
                    break
                if inflight:
                    await asyncio.wait(
                        inflight.values(),
                        timeout=self.timings.resend_interval,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                else:  # every call failed at once (unreachable): wait for the resend
                    await asyncio.sleep(self.timings.resend_interval)
                actions = []
                for key, task in list(inflight.items()):
                    if task.done():
                        del inflight[key]
                        actions += task.result()(coordinator, loop.time())
                actions += coordinator.on_tick(loop.time())
        finally:
            for task in inflight.values():
                task.cancel()
        return self._outcome(txn, coordinator)

    def _outcome(self, txn: Txn, coordinator: Coordinator) -> TxnOutcome:
        if coordinator.phase is Phase.DONE:
            return TxnOutcome(coordinator.decision, coordinator.reason)
        if coordinator.phase is Phase.FENCED:
            log.warning("txn=%s epoch=%d fenced: a newer leader owns it", txn.order_id, txn.epoch)
            return TxnOutcome(None, coordinator.reason, fenced=True)
        log.error("txn=%s epoch=%d failed: %s", txn.order_id, txn.epoch, coordinator.reason)
        return TxnOutcome(None, coordinator.reason)

    def _dispatch(
        self,
        action: Action,
        txn: Txn,
        inflight: dict[tuple[Kind, str], asyncio.Task[Feed]],
    ) -> None:
        if action.kind in (Kind.FINISHED, Kind.FAILED):
            if action.kind is Kind.FAILED:
                log.error("txn=%s %s", txn.order_id, action.reason)
            return
        key = (action.kind, action.participant)
        if key in inflight:  # one RPC at a time per action and participant
            return
        inflight[key] = asyncio.create_task(self._perform(action, txn))
        self.trace.sent(txn.order_id, txn.epoch, action)

    # -- the RPCs ---------------------------------------------------------------------

    async def _perform(self, action: Action, txn: Txn) -> Feed:
        calls: dict[tuple[Kind, str], Callable[[Action, Txn], Coroutine[Any, Any, Feed]]] = {
            (Kind.READ_DECISION, ""): self._read_decision,
            (Kind.LOG_DECISION, ""): self._log_decision,
            (Kind.PREPARE, BOOKS): self._reserve,
            (Kind.PREPARE, PAYMENT): self._authorize,
            (Kind.COMMIT, BOOKS): self._books_txn,
            (Kind.ABORT, BOOKS): self._books_txn,
            (Kind.COMMIT, PAYMENT): self._payment_txn,
            (Kind.ABORT, PAYMENT): self._payment_txn,
        }
        participant = action.participant
        step = Step(txn.order_id, action.kind, participant)
        await self.observer.sending(step)
        try:
            feed = await calls[(action.kind, participant)](action, txn)
        except grpcutil.Rejected as exc:
            code, message = exc.code, exc.message
            return lambda c, now: c.on_refused(participant, code, message, now)
        except grpcutil.ServiceUnavailable as exc:
            log.warning("txn=%s %s %s: %s", txn.order_id, action.kind, participant or "log", exc)
            return _nothing
        await self.observer.answered(step)
        return feed

    async def _rpc(self, service: str, call: Any, request: Any) -> Any:
        try:
            return await call(request, timeout=self.rpc_timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise grpcutil.translate(service, exc) from None

    async def _read_decision(self, action: Action, txn: Txn) -> Feed:
        reply = await self._rpc(
            "order-queue", self.queue.GetDecision, common_pb2.OrderId(value=txn.order_id)
        )
        decision = Decision(reply.decision) if reply.decision else None
        reason = str(reply.reason)
        return lambda c, now: c.on_decision_read(decision, reason, now)

    async def _log_decision(self, action: Action, txn: Txn) -> Feed:
        assert action.decision is not None
        # The commit point: the queue records the order's execution with its first
        # decision (the amount to capture, or the reason the customer reads).
        commit = action.decision is Decision.COMMIT
        request = queue_pb2.LogDecisionRequest(
            order_id=common_pb2.OrderId(value=txn.order_id),
            decision=action.decision.value,
            epoch=txn.epoch,
            reason=action.reason[:512],
            amount_cents=txn.amount_cents if commit else 0,
            customer_reason="" if commit else customer_reason(action.reason)[:512],
        )
        try:  # in a LeaderBatch call with the other orders' decisions and completions
            reply = await self.leader_calls.log_decision(request)
        except grpc.aio.AioRpcError as exc:
            raise grpcutil.translate("order-queue", exc) from None
        decision, reason = Decision(reply.decision), str(reply.reason)
        log.info("txn=%s decision=%s epoch=%d %s", txn.order_id, decision, txn.epoch, reason)
        metrics.COMMIT_DECISIONS_TOTAL.labels(decision=decision.value).inc()
        self.trace.answered(txn.order_id, txn.epoch, "logged", DECISION_LOG, str(decision))
        return lambda c, now: c.on_logged(decision, reason, now)

    async def _reserve(self, action: Action, txn: Txn) -> Feed:
        reservation = await self.books.reserve(txn.order_id, txn.items, txn.epoch)
        reason = "" if reservation.ok else reservation.message
        self._voted(txn, BOOKS, reservation.ok, reason)
        return lambda c, now: c.on_vote(BOOKS, reservation.ok, reason, now)

    async def _authorize(self, action: Action, txn: Txn) -> Feed:
        request = payment_pb2.AuthorizeRequest(
            txn_id=common_pb2.OrderId(value=txn.order_id),
            token=txn.token,
            amount_cents=txn.amount_cents,
            currency=CURRENCY,
            epoch=txn.epoch,
        )
        try:
            outcome = await self._payments.call(payment_pb2.PaymentOperation(authorize=request))
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                self._voted(txn, PAYMENT, False, NO_ANSWER)
                return lambda c, now: c.on_vote(PAYMENT, False, NO_ANSWER, now)
            raise grpcutil.translate(PAYMENT, exc) from None
        yes, reason = bool(outcome.authorized.approved), str(outcome.authorized.reason)
        self._voted(txn, PAYMENT, yes, reason)
        return lambda c, now: c.on_vote(PAYMENT, yes, reason, now)

    async def _books_txn(self, action: Action, txn: Txn) -> Feed:
        if action.kind is Kind.COMMIT:
            await self.books.commit(txn.order_id, txn.epoch)
        else:
            await self.books.release(txn.order_id, txn.epoch)
        self.trace.answered(txn.order_id, txn.epoch, "ack", BOOKS, action.kind.value)
        return lambda c, now: c.on_ack(BOOKS, now)

    async def _payment_txn(self, action: Action, txn: Txn) -> Feed:
        request = payment_pb2.TxnRequest(
            txn_id=common_pb2.OrderId(value=txn.order_id), epoch=txn.epoch, reason=action.reason
        )
        if action.kind is Kind.COMMIT:
            operation = payment_pb2.PaymentOperation(capture=request)
        else:
            operation = payment_pb2.PaymentOperation(void=request)
        try:
            await self._payments.call(operation)
        except grpc.aio.AioRpcError as exc:
            raise grpcutil.translate(PAYMENT, exc) from None
        self.trace.answered(txn.order_id, txn.epoch, "ack", PAYMENT, action.kind.value)
        return lambda c, now: c.on_ack(PAYMENT, now)

    async def _apply_payments(
        self, operations: Sequence[payment_pb2.PaymentOperation]
    ) -> list[payment_pb2.PaymentOutcome | BaseException]:
        """One Apply call for concurrent transactions' payment calls. An operation's
        error becomes the AioRpcError its own call would have raised (same code,
        same details); a failure of the whole call reaches every caller."""
        batch = payment_pb2.PaymentBatch(operations=operations)
        reply = await self.payment.Apply(
            batch, timeout=self.rpc_timeout_s, metadata=tracing.call_metadata()
        )
        return [
            grpcutil.call_error(outcome.error.code, outcome.error.message)
            if outcome.HasField("error")
            else outcome
            for outcome in reply.outcomes
        ]

    def _voted(self, txn: Txn, participant: str, yes: bool, reason: str) -> None:
        detail = "yes" if yes else f"no: {reason}"
        self.trace.answered(txn.order_id, txn.epoch, "vote", participant, detail)
