"""Payment's requests checked and its replies built: the one place where named
result codes become gRPC status codes (`status`).

A request is checked before anything is read or written (BadRequest, BadCard);
no error message holds a card number or a CVV.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import grpc

from bookstore.commitment.participant import BadRequest, TxnError
from bookstore.commitment.status import REFUSALS
from bookstore.payment.cards import BadCard, CardInfo, card_info
from bookstore.payment.ledger import CURRENCY, Authorization, TxnView, UnknownToken
from bookstore.pb import common_pb2, payment_pb2

log = logging.getLogger("bookstore.payment.service")  # the service's log lines

MAX_ID_CHARS = 128
MAX_AMOUNT_CENTS = 10**9
MAX_CARD_FIELD_CHARS = 64
MAX_REASON_CHARS = 512  # a void's reason is kept up to this


# The participant's refusals read as the books database's (one table); then payment's own.
_CODES = REFUSALS | {UnknownToken.code: grpc.StatusCode.NOT_FOUND}


def status(exc: BaseException) -> tuple[grpc.StatusCode, str] | None:
    """The gRPC status a refused request ends with; None for any other error."""
    if isinstance(exc, TxnError):
        return _CODES.get(exc.code, grpc.StatusCode.INVALID_ARGUMENT), str(exc)
    if isinstance(exc, BadCard):
        return grpc.StatusCode.INVALID_ARGUMENT, f"BAD_CARD: {exc}"
    return None


def error_outcome(code: grpc.StatusCode, message: str) -> payment_pb2.PaymentOutcome:
    return payment_pb2.PaymentOutcome(error=operation_error(code, message))


def operation_error(code: grpc.StatusCode, message: str) -> payment_pb2.OperationError:
    return payment_pb2.OperationError(code=code.value[0], message=message)


def checked_card(request: payment_pb2.TokenizeRequest) -> CardInfo:
    """What the ledger may keep of the request's card, or BadRequest / BadCard."""
    fields = (request.number, request.expiration, request.cvv)
    if any(len(f) > MAX_CARD_FIELD_CHARS for f in fields):
        raise BadRequest("card field too long")
    return card_info(*fields)


def token_reply(token: str, card: CardInfo) -> payment_pb2.TokenizeReply:
    log.info("tokenized brand=%s last4=%s", card.brand, card.last4)
    return payment_pb2.TokenizeReply(
        token=token, brand=card.brand, last4=card.last4, expiration=card.expiration
    )


@dataclass(frozen=True)
class Operation:
    """One operation of an Apply, checked."""

    kind: str  # "authorize" | "capture" | "void"
    txn_id: str
    epoch: int
    auth: Authorization | None = None  # of an authorize
    reason: str = ""  # of a void


def operation(op: payment_pb2.PaymentOperation) -> Operation:
    """The operation, or BadRequest."""
    kind = op.WhichOneof("op")
    if kind == "authorize":
        a = op.authorize
        return Operation(kind, txn_id_of(a), epoch_of(a), auth=authorization(a))
    if kind == "capture":
        return Operation(kind, txn_id_of(op.capture), epoch_of(op.capture))
    if kind == "void":
        reason = op.void.reason[:MAX_REASON_CHARS]
        return Operation(kind, txn_id_of(op.void), epoch_of(op.void), reason=reason)
    raise BadRequest("an operation is required: authorize, capture or void")


def txn_id_of(message: Any) -> str:
    txn_id = str(message.txn_id.value)
    if not 0 < len(txn_id) <= MAX_ID_CHARS:
        raise BadRequest(f"txn id must be 1..{MAX_ID_CHARS} characters")
    return txn_id


def epoch_of(message: Any) -> int:
    if message.epoch <= 0:
        raise BadRequest("the coordinator's epoch is required")
    return int(message.epoch)


def authorization(request: payment_pb2.AuthorizeRequest) -> Authorization:
    """The request's authorization, or BadRequest (nothing is read or written)."""
    if not 0 < len(request.token) <= MAX_ID_CHARS:
        raise BadRequest("a token is required")
    if not 0 < request.amount_cents <= MAX_AMOUNT_CENTS:
        raise BadRequest(f"amount_cents must be 1..{MAX_AMOUNT_CENTS}")
    if request.currency != CURRENCY:
        raise BadRequest(f"currency must be {CURRENCY}, not {request.currency!r}")
    return Authorization(request.token, int(request.amount_cents), request.currency)


def transaction_pb(view: TxnView) -> payment_pb2.Transaction:
    r = view.record
    return payment_pb2.Transaction(
        txn_id=common_pb2.OrderId(value=r.txn_id),
        state=r.state.value,
        amount_cents=r.request.amount_cents if r.request else 0,
        currency=r.request.currency if r.request else "",
        epoch=r.epoch,
        reason=r.reason,
        brand=view.brand,
        last4=view.last4,
        updated_at=view.updated_at,
    )
