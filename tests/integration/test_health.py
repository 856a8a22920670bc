"""The health probes against a real gRPC server and a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from grpc_health.v1 import health_pb2
from healthz import healthz_server

from bookstore import health
from bookstore.grpcutil import create_server, set_serving


def test_a_wildcard_bind_is_reached_on_loopback() -> None:
    assert health.local("0.0.0.0:50051") == ("127.0.0.1", 50051)
    assert health.local("[::]:7") == ("127.0.0.1", 7)
    assert health.local("queue:8") == ("queue", 8)
    with pytest.raises(ValueError):
        health.local("no-port")


@pytest.fixture
async def grpc_server() -> AsyncIterator[tuple[object, int]]:
    server, servicer, port = create_server("127.0.0.1:0", lambda _: None, [])
    await server.start()
    try:
        yield servicer, port
    finally:
        await server.stop(None)


async def test_grpc_probes_say_serving_only_when_it_is(grpc_server: tuple[object, int]) -> None:
    servicer, port = grpc_server
    address = f"0.0.0.0:{port}"
    await servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)  # type: ignore[attr-defined]
    assert "NOT_SERVING" in (await health.grpc_problem(address) or "")
    assert not await health.grpc_serving(address)
    sync = await asyncio.to_thread(health.grpc_problem_sync, address)
    assert sync is not None and "NOT_SERVING" in sync
    await set_serving(servicer, [])  # type: ignore[arg-type]
    assert await health.grpc_serving(address)
    assert await asyncio.to_thread(health.grpc_problem_sync, address) is None


async def test_a_grpc_probe_of_nothing_says_unavailable() -> None:
    assert "UNAVAILABLE" in (await health.grpc_problem("127.0.0.1:1") or "")
    sync = await asyncio.to_thread(health.grpc_problem_sync, "127.0.0.1:1")
    assert sync is not None and "UNAVAILABLE" in sync


@pytest.fixture
def healthz() -> Iterator[tuple[int, list[int]]]:
    """An HTTP server on a free port whose /healthz answers the status in the list."""
    with healthz_server() as served:
        yield served


async def test_http_probes_want_200_from_healthz(healthz: tuple[int, list[int]]) -> None:
    port, status = healthz
    address = f"127.0.0.1:{port}"
    assert await health.http_healthy(address)
    assert await asyncio.to_thread(health.http_problem_sync, address) is None
    status[0] = 503
    assert "503" in (await health.http_problem(address) or "")
    assert "503" in (await asyncio.to_thread(health.http_problem_sync, address) or "")


async def test_an_http_probe_of_nothing_says_why() -> None:
    assert "127.0.0.1:1" in (await health.http_problem("127.0.0.1:1") or "")
    assert "127.0.0.1:1" in (health.http_problem_sync("127.0.0.1:1") or "")
