"""Payment's batch calls, as their callers read them: an operation's error outcome
is the gRPC error its own call would have raised (same code, same details), so a
caller handles it exactly as it handled that call's error."""

from __future__ import annotations

import grpc

from bookstore import grpcutil
from bookstore.pb import payment_pb2


def rpc_error(error: payment_pb2.OperationError) -> grpc.aio.AioRpcError:
    return grpcutil.call_error(error.code, error.message)
