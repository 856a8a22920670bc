"""Payment's Apply over real gRPC, in process: each operation of a batch has its own
outcome (a reply or its refusal), and a batch's writes share one commit."""

from __future__ import annotations

import logging
import re

import grpc
import pytest
from test_payment_service import Stub, authorize, authorized, oid, refused, token_of, txn

from bookstore.payment.service import MAX_BATCH, PaymentServicer
from bookstore.pb import common_pb2, payment_pb2

Op = payment_pb2.PaymentOperation


def void(txn_id: str, epoch: int = 1, reason: str = "") -> payment_pb2.TxnRequest:
    return payment_pb2.TxnRequest(txn_id=oid(txn_id), epoch=epoch, reason=reason)


async def apply(stub: Stub, *operations: Op) -> list[payment_pb2.PaymentOutcome]:
    reply = await stub.Apply(payment_pb2.PaymentBatch(operations=operations), timeout=10)
    assert len(reply.outcomes) == len(operations)
    return list(reply.outcomes)


def error(outcome: payment_pb2.PaymentOutcome) -> tuple[grpc.StatusCode, str]:
    assert outcome.WhichOneof("outcome") == "error", outcome
    (code,) = [c for c in grpc.StatusCode if c.value[0] == outcome.error.code]
    return code, outcome.error.message


async def test_each_operation_has_the_outcome_of_its_own_call(stub: Stub) -> None:
    good, declined = await token_of(stub), await token_of(stub, "4000 0000 0000 0002")
    bad = grpc.StatusCode.INVALID_ARGUMENT
    outcomes = await apply(
        stub,
        Op(authorize=authorize("o1", good, 4999)),
        Op(authorize=authorize("o2", declined)),
        Op(capture=txn("o3")),  # never authorized
        Op(authorize=authorize("o4", good, currency="USD")),
        Op(authorize=authorize("o5", "tok_nope")),
        Op(),  # no operation at all
        Op(void=void("o6", reason="out of stock")),  # presumed abort
        Op(capture=txn("o1")),
    )
    assert outcomes[0].authorized == payment_pb2.AuthorizeReply(approved=True, state="prepared")
    assert outcomes[1].authorized == payment_pb2.AuthorizeReply(
        approved=False, reason="card declined", state="aborted"
    )
    never = "UNKNOWN_TXN: txn o3 was never prepared here"
    assert error(outcomes[2]) == (grpc.StatusCode.NOT_FOUND, never)
    assert error(outcomes[3]) == (bad, "BAD_REQUEST: currency must be EUR, not 'USD'")
    assert error(outcomes[4]) == (grpc.StatusCode.NOT_FOUND, "UNKNOWN_TOKEN: no such token")
    assert error(outcomes[5])[0] == bad and error(outcomes[5])[1].startswith("BAD_REQUEST: ")
    voided = outcomes[6].transaction
    assert (voided.txn_id.value, voided.state, voided.reason) == ("o6", "aborted", "out of stock")
    captured = outcomes[7].transaction
    assert (captured.state, captured.amount_cents, captured.last4) == ("committed", 4999, "4242")
    status = await stub.Status(common_pb2.Empty())
    assert (status.captured_cents, status.committed, status.aborted, status.prepared) == (
        4999,
        1,
        2,
        0,
    )


async def test_a_stale_epoch_refuses_only_its_own_operation(
    servicer: PaymentServicer, stub: Stub
) -> None:
    token = await token_of(stub)
    await authorized(stub, authorize("o1", token, epoch=5))
    outcomes = await apply(
        stub,
        Op(authorize=authorize("o2", token, epoch=5)),
        Op(capture=txn("o1", 4)),  # a deposed coordinator's
        Op(void=void("o3", 4)),
        Op(capture=txn("o1", 5)),
    )
    assert outcomes[0].authorized.approved
    stale = (grpc.StatusCode.FAILED_PRECONDITION, "STALE_EPOCH: epoch 4 is older than 5")
    assert error(outcomes[1]) == error(outcomes[2]) == stale
    assert outcomes[3].transaction.state == "committed"
    assert await servicer.call(servicer.ledger.transaction, "o3") is None
    assert (await stub.Status(common_pb2.Empty())).epoch == 5


async def test_a_repeated_operation_answers_the_first_outcome_within_and_across_batches(
    stub: Stub,
) -> None:
    token = await token_of(stub)
    first = await apply(
        stub,
        Op(authorize=authorize("o1", token)),
        Op(authorize=authorize("o1", token)),
        Op(capture=txn("o1")),
        Op(capture=txn("o1")),
        Op(void=void("o2")),
        Op(authorize=authorize("o2", token)),  # late, after the abort: no
    )
    assert first[0].authorized == first[1].authorized
    assert first[2].transaction.state == first[3].transaction.state == "committed"
    assert (first[5].authorized.approved, first[5].authorized.state) == (False, "aborted")
    again = await apply(
        stub,
        Op(capture=txn("o1")),
        Op(authorize=authorize("o1", token)),
        Op(void=void("o1")),
        Op(void=void("o2")),
        Op(authorize=authorize("o1", token, amount=1)),
    )
    assert again[0].transaction.state == "committed"
    assert again[1].authorized == payment_pb2.AuthorizeReply(approved=True, state="committed")
    assert error(again[2])[0] == grpc.StatusCode.FAILED_PRECONDITION
    assert error(again[2])[1].startswith("ALREADY_COMMITTED: ")
    assert again[3].transaction.state == "aborted"
    assert error(again[4])[0] == grpc.StatusCode.FAILED_PRECONDITION
    assert error(again[4])[1].startswith("TXN_MISMATCH: ")
    status = await stub.Status(common_pb2.Empty())
    assert (status.captured_cents, status.committed, status.aborted) == (4999, 1, 1)


async def test_the_timeout_card_answers_no_answer_at_once_and_holds_up_no_one(
    servicer: PaymentServicer, stub: Stub
) -> None:
    hanging, good = await token_of(stub, "4000 0000 0000 0119"), await token_of(stub)
    outcomes = await apply(
        stub, Op(authorize=authorize("o1", hanging)), Op(authorize=authorize("o2", good))
    )
    assert error(outcomes[0]) == (grpc.StatusCode.DEADLINE_EXCEEDED, "the processor did not answer")
    assert outcomes[1].authorized.approved
    # Nothing is recorded; the coordinator's void presumes abort.
    assert await servicer.call(servicer.ledger.transaction, "o1") is None
    (voided,) = await apply(stub, Op(void=void("o1")))
    assert voided.transaction.state == "aborted"


async def test_a_batch_writes_in_one_commit(stub: Stub, commits: list[int]) -> None:
    token = await token_of(stub)
    await apply(stub, *(Op(authorize=authorize(f"p{i}", token)) for i in range(5)))
    del commits[:]  # the token's and the first batch's
    operations = [Op(authorize=authorize(f"o{i}", token)) for i in range(20)]
    operations += [Op(capture=txn(f"p{i}")) for i in range(3)]
    operations += [Op(void=void(f"p{i}")) for i in range(3, 5)]
    operations.append(Op(capture=txn("p0", 0)))  # malformed: refused before any write
    outcomes = await apply(stub, *operations)
    assert commits == [25]  # one transaction, one fsync
    assert [o.WhichOneof("outcome") for o in outcomes] == ["authorized"] * 20 + [
        "transaction"
    ] * 5 + ["error"]


async def test_a_whole_call_fails_only_for_what_fails_every_operation(
    servicer: PaymentServicer, stub: Stub, fatal: list[BaseException]
) -> None:
    too_many = [Op(capture=txn(f"o{i}")) for i in range(MAX_BATCH + 1)]
    await refused(
        stub.Apply(payment_pb2.PaymentBatch(operations=too_many)),
        grpc.StatusCode.INVALID_ARGUMENT,
        rf"^BAD_REQUEST: at most {MAX_BATCH} operations",
    )
    assert await apply(stub) == []
    servicer.ledger.conn.close()  # every write now fails inside SQLite
    await refused(
        stub.Apply(payment_pb2.PaymentBatch(operations=[Op(capture=txn("o1"))])),
        grpc.StatusCode.UNAVAILABLE,
        r"^STORAGE_FAILED: ",
    )
    assert [type(e).__name__ for e in fatal] == ["StorageFailure"]


async def test_a_tokenize_batch_answers_each_card_without_a_write(
    stub: Stub, commits: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cards = [
        payment_pb2.TokenizeRequest(number="4242 4242 4242 4242", expiration="12/39", cvv="975"),
        payment_pb2.TokenizeRequest(number="4242 4242 4242 4241", expiration="12/39", cvv="975"),
        payment_pb2.TokenizeRequest(number="5555555555554444", expiration="12/39", cvv="864"),
        payment_pb2.TokenizeRequest(number="4" * 65, expiration="12/39", cvv="123"),
    ]
    reply = await stub.TokenizeBatch(payment_pb2.TokenizeBatchRequest(cards=cards), timeout=10)
    first, luhn, second, long = reply.outcomes
    assert commits == []  # sealed tokens: nothing written
    assert (first.token.brand, first.token.last4) == ("visa", "4242")
    assert (second.token.brand, second.token.last4) == ("mastercard", "4444")
    assert first.token.token.startswith("tok_") and first.token.token != second.token.token
    bad = grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert luhn.error.code == long.error.code == bad
    assert luhn.error.message.startswith("BAD_CARD: ")
    assert long.error.message == "BAD_REQUEST: card field too long"
    assert (await stub.Status(common_pb2.Empty())).tokens == 0  # none authorized yet
    for card in cards[:3]:
        assert card.number.replace(" ", "") not in caplog.text
        # The CVV as a token of its own (its digits may occur inside an id in a log line).
        assert not re.search(rf"\b{card.cvv}\b", caplog.text)
