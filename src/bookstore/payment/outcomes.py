"""Payment's batch calls, as their callers read them: an operation's error outcome
is the gRPC error its own call would have raised (same code, same details), so a
caller handles it exactly as it handled that call's error."""

from __future__ import annotations

import grpc

from bookstore.pb import payment_pb2

_CODES = {code.value[0]: code for code in grpc.StatusCode}


def rpc_error(error: payment_pb2.OperationError) -> grpc.aio.AioRpcError:
    code = _CODES.get(error.code, grpc.StatusCode.UNKNOWN)
    metadata = grpc.aio.Metadata()
    return grpc.aio.AioRpcError(code, metadata, metadata, error.message)
