"""The payment service over real gRPC, in process: test cards, two-phase-commit
answers, idempotency, fencing, precise refusals, durability, no card data kept.

Each operation goes as the product sends it, in an Apply (or a TokenizeBatch) of
its own; its refusal is raised as the gRPC error the executor's batching hands
its caller (`grpcutil.call_error`)."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import TypeAlias

import grpc
import pytest

from bookstore import grpcutil
from bookstore.commitment.participant import Vote
from bookstore.payment.ledger import Authorization, Ledger, UnknownToken
from bookstore.payment.service import PaymentServicer
from bookstore.pb import common_pb2, payment_pb2, payment_pb2_grpc

Stub: TypeAlias = "payment_pb2_grpc.PaymentAsyncStub"
Op = payment_pb2.PaymentOperation
GOOD = "4242 4242 4242 4242"
EXPIRY = "12/39"


async def tokenized(stub: Stub, card: payment_pb2.TokenizeRequest) -> payment_pb2.TokenizeReply:
    """One card's token, in a TokenizeBatch; its refusal raised."""
    request = payment_pb2.TokenizeBatchRequest(cards=[card])
    (outcome,) = (await stub.TokenizeBatch(request, timeout=10)).outcomes
    if outcome.HasField("error"):
        raise grpcutil.call_error(outcome.error.code, outcome.error.message)
    return outcome.token


async def token_of(stub: Stub, number: str = GOOD, cvv: str = "123") -> str:
    card = payment_pb2.TokenizeRequest(number=number, expiration=EXPIRY, cvv=cvv)
    reply = await tokenized(stub, card)
    assert reply.token.startswith("tok_") and reply.last4 == number[-4:]
    return reply.token


async def one(stub: Stub, operation: Op) -> payment_pb2.PaymentOutcome:
    """One operation's outcome, in an Apply; its refusal raised."""
    batch = payment_pb2.PaymentBatch(operations=[operation])
    (outcome,) = (await stub.Apply(batch, timeout=10)).outcomes
    if outcome.HasField("error"):
        raise grpcutil.call_error(outcome.error.code, outcome.error.message)
    return outcome


async def authorized(
    stub: Stub, request: payment_pb2.AuthorizeRequest
) -> payment_pb2.AuthorizeReply:
    return (await one(stub, Op(authorize=request))).authorized


async def captured(stub: Stub, request: payment_pb2.TxnRequest) -> payment_pb2.Transaction:
    return (await one(stub, Op(capture=request))).transaction


async def voided(stub: Stub, request: payment_pb2.TxnRequest) -> payment_pb2.Transaction:
    return (await one(stub, Op(void=request))).transaction


def oid(txn_id: str) -> common_pb2.OrderId:
    return common_pb2.OrderId(value=txn_id)


def authorize(
    txn_id: str, token: str, amount: int = 4999, epoch: int = 1, currency: str = "EUR"
) -> payment_pb2.AuthorizeRequest:
    return payment_pb2.AuthorizeRequest(
        txn_id=oid(txn_id), token=token, amount_cents=amount, currency=currency, epoch=epoch
    )


def txn(txn_id: str, epoch: int = 1) -> payment_pb2.TxnRequest:
    return payment_pb2.TxnRequest(txn_id=oid(txn_id), epoch=epoch)


async def refused(call: object, code: grpc.StatusCode, details: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    assert info.value.code() == code
    assert re.match(details, info.value.details() or ""), info.value.details()


async def test_a_valid_card_is_authorized_then_captured(stub: Stub) -> None:
    token = await token_of(stub)
    vote = await authorized(stub, authorize("o1", token, 4999))
    assert (vote.approved, vote.reason, vote.state) == (True, "", "prepared")
    done = await captured(stub, txn("o1"))
    assert (done.state, done.amount_cents, done.currency) == ("committed", 4999, "EUR")
    assert (done.brand, done.last4) == ("visa", "4242")
    status = await stub.Status(common_pb2.Empty())
    assert (status.captured_cents, status.committed, status.prepared) == (4999, 1, 0)


@pytest.mark.parametrize(
    ("number", "reason"),
    [("4000 0000 0000 0002", "card declined"), ("4000000000009995", "insufficient funds")],
)
async def test_declining_test_cards_vote_no_and_capture_nothing(
    stub: Stub, number: str, reason: str
) -> None:
    token = await token_of(stub, number)
    vote = await authorized(stub, authorize("o1", token))
    assert (vote.approved, vote.reason, vote.state) == (False, reason, "aborted")
    again = await authorized(stub, authorize("o1", token))  # a duplicate: the first answer
    assert (again.approved, again.reason) == (False, reason)
    await refused(
        captured(stub, txn("o1")), grpc.StatusCode.FAILED_PRECONDITION, "ALREADY_ABORTED: "
    )
    assert (await stub.Status(common_pb2.Empty())).captured_cents == 0


async def test_an_invalid_card_is_refused_and_nothing_is_kept(stub: Stub) -> None:
    for number, expiry, cvv in [
        ("4242 4242 4242 4241", EXPIRY, "123"),  # Luhn
        (GOOD, "01/20", "123"),  # expired
        (GOOD, EXPIRY, "12"),  # CVV
    ]:
        request = payment_pb2.TokenizeRequest(number=number, expiration=expiry, cvv=cvv)
        await refused(tokenized(stub, request), grpc.StatusCode.INVALID_ARGUMENT, "BAD_CARD: ")
    assert (await stub.Status(common_pb2.Empty())).tokens == 0


async def test_retries_answer_the_first_outcome(stub: Stub) -> None:
    token = await token_of(stub)
    first = await authorized(stub, authorize("o1", token, epoch=1))
    assert (await authorized(stub, authorize("o1", token, epoch=2))) == first  # re-prepare
    done = await captured(stub, txn("o1", 2))
    assert (await captured(stub, txn("o1", 2))).state == done.state == "committed"
    await refused(
        voided(stub, txn("o1", 2)), grpc.StatusCode.FAILED_PRECONDITION, "ALREADY_COMMITTED: "
    )
    await refused(
        authorized(stub, authorize("o1", token, amount=1, epoch=2)),  # another amount
        grpc.StatusCode.FAILED_PRECONDITION,
        "TXN_MISMATCH: ",
    )
    await authorized(stub, authorize("o2", token, epoch=2))
    assert (await voided(stub, txn("o2", 2))).state == "aborted"
    assert (await voided(stub, txn("o2", 2))).state == "aborted"
    late = await authorized(stub, authorize("o2", token, epoch=2))
    assert (late.approved, late.state) == (False, "aborted")
    status = await stub.Status(common_pb2.Empty())
    assert (status.captured_cents, status.committed, status.aborted) == (4999, 1, 1)


async def test_a_stale_epoch_is_refused_and_changes_nothing(stub: Stub) -> None:
    token = await token_of(stub)
    await authorized(stub, authorize("o1", token, epoch=5))
    stale = r"^STALE_EPOCH: epoch 4 is older than 5$"
    for call in (
        captured(stub, txn("o1", 4)),
        voided(stub, txn("o1", 4)),
        authorized(stub, authorize("o2", token, epoch=4)),
    ):
        await refused(call, grpc.StatusCode.FAILED_PRECONDITION, stale)
    status = await stub.Status(common_pb2.Empty())
    assert (status.epoch, status.prepared, status.committed, status.aborted) == (5, 1, 0, 0)
    assert [t.txn_id.value for t in status.in_doubt] == ["o1"]


async def test_unknown_tokens_and_malformed_requests_are_precise_and_change_nothing(
    stub: Stub,
) -> None:
    token = await token_of(stub)
    bad = grpc.StatusCode.INVALID_ARGUMENT
    cases = [
        (authorize("o1", "tok_nope", epoch=9), grpc.StatusCode.NOT_FOUND, "UNKNOWN_TOKEN: "),
        (authorize("o1", token, amount=0), bad, "BAD_REQUEST: amount_cents"),
        (authorize("o1", token, currency="USD"), bad, "BAD_REQUEST: currency must be EUR"),
        (authorize("", token), bad, "BAD_REQUEST: txn id"),
        (authorize("o1", token, epoch=0), bad, "BAD_REQUEST: the coordinator's epoch"),
        (authorize("o1", ""), bad, "BAD_REQUEST: a token"),
    ]
    for request, code, details in cases:
        await refused(authorized(stub, request), code, details)
    await refused(captured(stub, txn("o1")), grpc.StatusCode.NOT_FOUND, "UNKNOWN_TXN: ")
    await refused(captured(stub, txn("o1", 0)), bad, "BAD_REQUEST: ")
    status = await stub.Status(common_pb2.Empty())
    assert (status.epoch, status.prepared, status.committed, status.aborted) == (0, 0, 0, 0)


async def test_the_ledger_survives_a_reopen(stub: Stub, ledger_path: Path) -> None:
    token = await token_of(stub)
    await authorized(stub, authorize("o1", token, 1000, epoch=3))
    await captured(stub, txn("o1", 3))
    await authorized(stub, authorize("o2", token, 250, epoch=3))
    reopened = Ledger(ledger_path)
    try:
        status = reopened.status()
        assert (status.captured_cents, status.epoch, status.tokens) == (1000, 3, 1)
        assert [v.record.txn_id for v in status.in_doubt] == ["o2"]
        assert reopened.card(token).last4 == "4242"
    finally:
        reopened.close()


def test_the_ledger_is_wal_with_full_sync(ledger_path: Path) -> None:
    ledger = Ledger(ledger_path)
    try:
        assert ledger.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert ledger.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        ledger.close()


async def test_no_card_number_or_cvv_in_the_ledger_files_or_the_logs(
    stub: Stub,
    ledger_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    cards = [("3782 822463 10005", "8531"), ("5555-5555-5555-4444", "864"), (GOOD, "975")]
    for i, (number, cvv) in enumerate(cards):
        token = await token_of(stub, number, cvv)
        await authorized(stub, authorize(f"o{i}", token))
        await captured(stub, txn(f"o{i}"))
    stored = b"".join(p.read_bytes() for p in ledger_path.parent.iterdir())
    assert b"4242" in stored  # the last four are kept: the check can see the files
    for number, cvv in cards:
        digits = number.replace(" ", "").replace("-", "")
        for text in (digits, number, digits[:12]):
            assert text.encode() not in stored
            assert text not in caplog.text
        # The CVV as a token of its own (its digits may occur inside a random token).
        assert not re.search(rb"(?<![0-9A-Za-z_-])" + cvv.encode() + rb"(?![0-9A-Za-z_-])", stored)
        assert not re.search(rf"\b{cvv}\b", caplog.text)


async def test_a_ledger_that_cannot_write_is_fatal_and_answers_unavailable(
    servicer: PaymentServicer, stub: Stub, fatal: list[BaseException]
) -> None:
    token = await token_of(stub)
    servicer.ledger.conn.close()  # every write now fails inside SQLite
    await refused(
        authorized(stub, authorize("o1", token)), grpc.StatusCode.UNAVAILABLE, r"^STORAGE_FAILED: "
    )
    assert [type(e).__name__ for e in fatal] == ["StorageFailure"]


async def test_writes_waiting_together_share_one_commit_and_a_refused_one_changes_nothing(
    stub: Stub, servicer: PaymentServicer, commits: list[int]
) -> None:
    token = await token_of(stub)
    del commits[:]  # the token's
    ledger = servicer.ledger
    writes = [
        servicer.write(ledger.authorize, f"g{i}", Authorization(token, 100 + i, "EUR"), 1)
        for i in range(20)
    ]
    writes.insert(7, servicer.write(ledger.authorize, "g-bad", Authorization("tok_x", 1, "EUR"), 1))
    answers = await asyncio.gather(*writes, return_exceptions=True)
    assert commits == [21]  # one transaction, one fsync
    assert isinstance(answers.pop(7), UnknownToken)
    assert all(isinstance(a, Vote) and a.yes for a in answers), answers
    status = await stub.Status(common_pb2.Empty())
    assert (status.prepared, status.epoch) == (20, 1)
    assert await servicer.call(servicer.ledger.transaction, "g-bad") is None
