"""The gRPC server interceptor counts and times every unary call by method and code."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bookstore import grpcutil
from bookstore.telemetry import metrics

CHECK = "/grpc.health.v1.Health/Check"


def _handled(code: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "bookstore_grpc_server_handled_total", {"method": CHECK, "code": code}
    )
    return value or 0.0


async def test_unary_calls_are_counted_by_method_and_code() -> None:
    server, health, port = grpcutil.create_server("127.0.0.1:0", lambda _: None, [])
    await server.start()
    ok, not_found = _handled("OK"), _handled("NOT_FOUND")
    timed = metrics.REGISTRY.get_sample_value(
        "bookstore_grpc_server_handling_seconds_count", {"method": CHECK}
    )
    try:
        await grpcutil.set_serving(health, [])
        async with grpcutil.channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=5)
            assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await server.stop(None)
    assert _handled("OK") == ok + 1
    assert _handled("NOT_FOUND") == not_found + 1
    after = metrics.REGISTRY.get_sample_value(
        "bookstore_grpc_server_handling_seconds_count", {"method": CHECK}
    )
    assert (after or 0) == (timed or 0) + 2
