"""The executor's two-phase-commit adapter: reasons customers read, the test-only
observer that crashes the leader at a point of the protocol."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import grpc
import pytest

from bookstore import grpcutil
from bookstore.books_database.client import Reservation
from bookstore.commitment.participant import Decision
from bookstore.order_executor.crash import CrashAt
from bookstore.order_executor.transaction import NO_ANSWER, TwoPhaseCommit, Txn, customer_reason
from bookstore.payment.ledger import Ledger
from bookstore.payment.service import PaymentServicer
from bookstore.payment.service import create_server as create_payment_server
from bookstore.pb import common_pb2, payment_pb2, payment_pb2_grpc, queue_pb2
from bookstore.settings import Settings
from bookstore.telemetry import metrics


@pytest.mark.parametrize(
    ("logged", "customer"),
    [
        ("books-database: out of stock: Dune, Emma", "out of stock: Dune, Emma"),
        ("payment: card declined", "payment declined: card declined"),
        ("payment: insufficient funds", "payment declined: insufficient funds"),
        (
            "no vote from payment in time",
            "payment declined: the card processor did not answer in time",
        ),
        (
            "no vote from books-database, payment in time",
            "not executed: no vote from books-database, payment in time",
        ),
        (
            "books-database: ALREADY_ABORTED: txn o1 was aborted",
            "not executed: books-database: ALREADY_ABORTED: txn o1 was aborted",
        ),
    ],
)
def test_an_abort_reads_as_the_customer_reason(logged: str, customer: str) -> None:
    assert customer_reason(logged) == customer


def test_an_unknown_crash_point_arms_nothing(tmp_path: Path) -> None:
    assert CrashAt("after-log", tmp_path).armed
    assert not CrashAt("now", tmp_path).armed
    assert not CrashAt("", tmp_path).armed


# -- the adapter against fake participants and a fake decision log ------------------------


def _rpc_error(code: grpc.StatusCode, details: str = "") -> grpc.aio.AioRpcError:
    metadata = grpc.aio.Metadata()
    return grpc.aio.AioRpcError(code, metadata, metadata, details)


@dataclass
class World:
    """The books database, payment and the queue's decision log, recording every call."""

    lacking: tuple[str, ...] = ()
    payment_error: tuple[grpc.StatusCode, str] | None = None  # every authorize's outcome
    payment_call_error: grpc.StatusCode | None = None  # of the next batch call, as a whole
    payment_batches: list[list[str]] = field(default_factory=list)
    log_refusal: str = ""
    logged: dict[str, queue_pb2.DecisionRecord] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    commit_s: float = 0.0  # how long the books database's commit takes

    # the books database client
    async def reserve(self, txn_id: str, items: Any, epoch: int) -> Reservation:
        self.calls.append("reserve")
        return Reservation(not self.lacking, "out of stock: " + ", ".join(self.lacking))

    async def commit(self, txn_id: str, epoch: int) -> None:
        self.calls.append("commit")
        await asyncio.sleep(self.commit_s)

    async def release(self, txn_id: str, epoch: int) -> None:
        self.calls.append("release")

    async def close(self) -> None:
        pass

    # payment: its batch call
    async def Apply(self, request: Any, timeout: float, **_: Any) -> payment_pb2.PaymentBatchReply:
        kinds = [str(op.WhichOneof("op")) for op in request.operations]
        self.calls += kinds
        self.payment_batches.append(kinds)
        await asyncio.sleep(0)  # on the wire: calls arriving meanwhile wait together
        if self.payment_call_error is not None:
            code, self.payment_call_error = self.payment_call_error, None
            raise _rpc_error(code)
        return payment_pb2.PaymentBatchReply(outcomes=[self._payment(kind) for kind in kinds])

    def _payment(self, kind: str) -> payment_pb2.PaymentOutcome:
        if kind != "authorize":
            state = "committed" if kind == "capture" else "aborted"
            return payment_pb2.PaymentOutcome(transaction=payment_pb2.Transaction(state=state))
        if self.payment_error is not None:
            code, message = self.payment_error
            error = payment_pb2.OperationError(code=code.value[0], message=message)
            return payment_pb2.PaymentOutcome(error=error)
        reply = payment_pb2.AuthorizeReply(approved=True, state="prepared")
        return payment_pb2.PaymentOutcome(authorized=reply)

    # the decision log
    async def GetDecision(self, request: Any, timeout: float) -> queue_pb2.DecisionRecord:
        self.calls.append("get-decision")
        return self.logged.get(request.value, queue_pb2.DecisionRecord())

    async def LeaderBatch(
        self, request: Any, timeout: float, **_: Any
    ) -> queue_pb2.LeaderBatchReply:
        reply = queue_pb2.LeaderBatchReply()
        for op in request.ops:
            self.calls.append("log-decision")
            if self.log_refusal:
                code = grpc.StatusCode.FAILED_PRECONDITION.value[0]
                reply.outcomes.add(error=queue_pb2.OpError(code=code, details=self.log_refusal))
                continue
            d = op.log_decision
            record = queue_pb2.DecisionRecord(
                order_id=d.order_id, decision=d.decision, reason=d.reason
            )
            reply.outcomes.add(decision=self.logged.setdefault(d.order_id.value, record))
        return reply


@pytest.fixture
async def world() -> AsyncIterator[tuple[World, TwoPhaseCommit]]:
    w = World()
    commit = TwoPhaseCommit(Settings(), cast(Any, w))
    await commit.books.close()
    commit.books = cast(Any, w)
    commit.payment = cast(Any, w)
    yield w, commit
    await commit.close()


def txn(read_log: bool = False) -> Txn:
    return Txn("o1", 3, {"b001": 2}, "tok_x", 2598, read_log)


class Crashed(Exception):
    """What the crash observer's kill raises here, in place of a SIGKILL."""


@pytest.mark.parametrize(
    ("point", "done", "not_yet"),
    [
        ("after-prepare", {"reserve", "authorize"}, {"log-decision"}),
        ("after-log", {"log-decision"}, {"commit", "capture"}),
        ("between-commits", {"commit"}, {"capture"}),
    ],
)
async def test_the_crash_observer_kills_the_leader_once_at_its_point(
    world: tuple[World, TwoPhaseCommit],
    tmp_path: Path,
    point: str,
    done: set[str],
    not_yet: set[str],
) -> None:
    w, commit = world
    at_the_kill: list[str] = []

    def kill() -> None:  # what had happened when the process died
        at_the_kill.extend(w.calls)
        raise Crashed

    w.commit_s = 0.05  # payment's commit would go meanwhile if the observer did not hold it
    commit.observer = CrashAt(point, tmp_path, kill=kill)
    with pytest.raises(Crashed):
        await commit.run(txn())
    assert done <= set(at_the_kill) and not not_yet & set(at_the_kill), at_the_kill
    # The next leader, started with the same setting, recovers instead of crashing too.
    w.calls.clear()
    commit.observer = CrashAt(point, tmp_path, kill=kill)
    outcome = await commit.run(txn(read_log=True))
    assert outcome.decision is Decision.COMMIT and {"commit", "capture"} <= set(w.calls)


async def test_both_yes_logs_commit_before_taking_and_capturing(
    world: tuple[World, TwoPhaseCommit],
) -> None:
    w, commit = world
    outcome = await commit.run(txn())
    assert (outcome.decision, outcome.fenced) == (Decision.COMMIT, False)
    assert sorted(w.calls[:2]) == ["authorize", "reserve"] and "get-decision" not in w.calls
    assert w.calls[2] == "log-decision" and sorted(w.calls[3:]) == ["capture", "commit"]


async def test_every_message_of_the_transaction_is_in_its_commitment_trace(
    world: tuple[World, TwoPhaseCommit],
) -> None:
    _, commit = world
    commits = metrics.REGISTRY.get_sample_value(
        "bookstore_commit_decisions_total", {"decision": "commit"}
    )
    await commit.run(txn())
    assert (
        metrics.REGISTRY.get_sample_value(
            "bookstore_commit_decisions_total", {"decision": "commit"}
        )
        == (commits or 0) + 1
    )
    steps = [(s.kind, s.sender, s.receiver, s.detail) for s in commit.trace.steps("o1")]
    assert sorted(steps[:4]) == [
        ("prepare", "coordinator", "books-database", ""),
        ("prepare", "coordinator", "payment", ""),
        ("vote", "books-database", "coordinator", "yes"),
        ("vote", "payment", "coordinator", "yes"),
    ]
    assert steps[4:6] == [
        ("decision", "coordinator", "decision-log", "commit"),
        ("logged", "decision-log", "coordinator", "commit"),
    ]
    assert sorted(steps[6:]) == [
        ("ack", "books-database", "coordinator", "commit"),
        ("ack", "payment", "coordinator", "commit"),
        ("decision", "coordinator", "books-database", "commit"),
        ("decision", "coordinator", "payment", "commit"),
    ]
    assert {s.epoch for s in commit.trace.steps("o1")} == {3}


async def test_out_of_stock_aborts_everywhere_with_the_titles(
    world: tuple[World, TwoPhaseCommit],
) -> None:
    w, commit = world
    w.lacking = ("Dune",)
    outcome = await commit.run(txn())
    assert outcome.decision is Decision.ABORT
    assert outcome.customer_reason == "out of stock: Dune"
    assert w.logged["o1"].decision == "abort"
    assert {"release", "void"} <= set(w.calls) and not {"commit", "capture"} & set(w.calls)


@pytest.mark.parametrize("whole_call", [False, True])
async def test_a_processor_that_does_not_answer_declines_the_payment(
    world: tuple[World, TwoPhaseCommit], whole_call: bool
) -> None:
    """The timeout card's own outcome in a batch, or the batch call's deadline: as the
    deadline of the order's own Authorize call was."""
    w, commit = world
    if whole_call:
        w.payment_call_error = grpc.StatusCode.DEADLINE_EXCEEDED
    else:
        w.payment_error = (grpc.StatusCode.DEADLINE_EXCEEDED, "the processor did not answer")
    outcome = await commit.run(txn())
    assert outcome.customer_reason == "payment declined: the card processor did not answer in time"
    assert w.logged["o1"].decision == "abort" and "capture" not in w.calls


async def test_a_stale_epoch_in_a_payment_operation_fences_the_transaction(
    world: tuple[World, TwoPhaseCommit],
) -> None:
    w, commit = world
    w.payment_error = (grpc.StatusCode.FAILED_PRECONDITION, "STALE_EPOCH: epoch 3 is older than 4")
    outcome = await commit.run(txn())
    assert (outcome.decision, outcome.fenced) == (None, True)
    assert "log-decision" not in w.calls


async def test_concurrent_transactions_share_payment_calls(
    world: tuple[World, TwoPhaseCommit],
) -> None:
    w, commit = world
    orders = [Txn(f"o{i}", 3, {"b001": 1}, "tok_x", 100) for i in range(8)]
    outcomes = await asyncio.gather(*(commit.run(t) for t in orders))
    assert all(o.decision is Decision.COMMIT for o in outcomes)
    operations = [kind for batch in w.payment_batches for kind in batch]
    assert sorted(operations) == ["authorize"] * 8 + ["capture"] * 8
    assert len(w.payment_batches) < 16 and max(map(len, w.payment_batches)) > 1


async def test_a_commit_that_cannot_be_delivered_is_sent_again(
    world: tuple[World, TwoPhaseCommit],
) -> None:
    """The capture's call fails as unreachable while nothing else is in flight: the
    coordinator's resend delivers it (the loop waits for it instead of failing)."""
    w, commit = world
    deliver = w.Apply
    refusals = [grpc.StatusCode.UNAVAILABLE]

    async def flaky(request: Any, timeout: float, **_: Any) -> payment_pb2.PaymentBatchReply:
        kinds = [op.WhichOneof("op") for op in request.operations]
        if "capture" in kinds and refusals:
            await asyncio.sleep(0.05)  # the books database's commit is acknowledged first
            raise _rpc_error(refusals.pop())
        return await deliver(request, timeout)

    w.Apply = flaky  # type: ignore[method-assign]
    outcome = await commit.run(txn())
    assert outcome.decision is Decision.COMMIT
    assert w.calls.count("capture") == 1 and not refusals


async def test_a_refused_epoch_at_the_log_fences_and_sends_no_decision(
    world: tuple[World, TwoPhaseCommit],
) -> None:
    w, commit = world
    w.log_refusal = "STALE_EPOCH: current epoch is 4"
    outcome = await commit.run(txn())
    assert (outcome.decision, outcome.fenced) == (None, True)
    assert not {"commit", "capture", "release", "void"} & set(w.calls)


async def test_a_redelivered_order_with_a_logged_decision_only_resends_it(
    world: tuple[World, TwoPhaseCommit],
) -> None:
    w, commit = world
    w.logged["o1"] = queue_pb2.DecisionRecord(decision="commit")
    outcome = await commit.run(txn(read_log=True))
    assert outcome.decision is Decision.COMMIT
    assert w.calls[0] == "get-decision" and sorted(w.calls[1:]) == ["capture", "commit"]


async def test_concurrent_transactions_share_calls_and_commits_at_a_real_payment_service(
    world: tuple[World, TwoPhaseCommit], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, commit = world
    servicer = PaymentServicer(Ledger(tmp_path / "ledger.db"))
    commits: list[int] = []
    run_batch = servicer.ledger.run_batch

    def counting(writes: list[Callable[[], Any]]) -> list[Any]:
        commits.append(len(writes))
        return run_batch(writes)

    monkeypatch.setattr(servicer.ledger, "run_batch", counting)
    server, _, port = create_payment_server("127.0.0.1:0", servicer)
    await server.start()
    channel = grpcutil.channel(f"127.0.0.1:{port}")
    try:
        commit.payment = payment_pb2_grpc.PaymentStub(channel)  # type: ignore[assignment]
        cards = [
            payment_pb2.TokenizeRequest(number=n, expiration="12/39", cvv="123")
            for n in ("4242424242424242", "4000000000000119")  # the second: no answer
        ]
        tokens = await commit.payment.TokenizeBatch(payment_pb2.TokenizeBatchRequest(cards=cards))
        good, hanging = (o.token.token for o in tokens.outcomes)
        del commits[:]
        orders = [Txn(f"o{i}", 3, {"b001": 1}, good, 100 + i) for i in range(8)]
        orders.append(Txn("o-timeout", 3, {"b001": 1}, hanging, 100))
        outcomes = await asyncio.gather(*(commit.run(t) for t in orders))
        status = await commit.payment.Status(common_pb2.Empty())
    finally:
        await channel.close()
        await server.stop(None)
        await servicer.close()
    assert [o.decision for o in outcomes] == [Decision.COMMIT] * 8 + [Decision.ABORT]
    assert outcomes[-1].customer_reason == f"payment declined: {NO_ANSWER}"
    assert (status.committed, status.aborted, status.captured_cents) == (8, 1, 828)
    # 18 operations (8 authorizations and captures, the timeout card's and its void),
    # in fewer calls and fewer ledger commits than operations.
    assert commit._payments.requests == 18 > commit._payments.batches
    assert sum(commits) == 17 > len(commits)
