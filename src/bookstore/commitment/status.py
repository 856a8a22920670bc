"""The gRPC status each participant refusal ends with, by its named result code.

One table for every participant (the books database and payment), so the same
refusal reads the same at both: status and "CODE: message". A service adds
only the codes of its own resource (NOT_PRIMARY, BAD_CARD, ...).
"""

from __future__ import annotations

import grpc

from bookstore.commitment.participant import (
    AlreadyAborted,
    AlreadyCommitted,
    BadRequest,
    StaleEpoch,
    TxnMismatch,
    UnknownTxn,
)

REFUSALS: dict[str, grpc.StatusCode] = {
    BadRequest.code: grpc.StatusCode.INVALID_ARGUMENT,
    UnknownTxn.code: grpc.StatusCode.NOT_FOUND,
    StaleEpoch.code: grpc.StatusCode.FAILED_PRECONDITION,
    AlreadyAborted.code: grpc.StatusCode.FAILED_PRECONDITION,
    AlreadyCommitted.code: grpc.StatusCode.FAILED_PRECONDITION,
    TxnMismatch.code: grpc.StatusCode.FAILED_PRECONDITION,
}
