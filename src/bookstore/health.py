"""Asking a service whether it is serving: the one question the launcher, the
container health check and the tests ask.

gRPC services answer the standard health protocol (grpc.health.v1, overall
status ""); the orchestrator answers GET /healthz. Each probe comes in an async
form (the launcher, tests) and a blocking form (the container health check),
and returns None when the service is serving, else one line saying why not.
gRPC is imported only when a gRPC probe runs: the launcher process stays small.

With TLS on a gRPC probe must present a certificate: it uses `transport`, by
default the process's (`grpcutil.use_transport`; the launcher's probe process
takes the launcher's identity, the container health check its service's).
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bookstore.grpcutil import Transport

TIMEOUT_S = 1.0
_ANY_HOST = ("", "0.0.0.0", "::")


def local(address: str) -> tuple[str, int]:
    """Where to reach `address` from this machine (a wildcard bind means loopback)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{address!r}: expected host:port")
    host = host.strip("[]")
    return ("127.0.0.1" if host in _ANY_HOST else host), int(port)


def _target(address: str) -> str:
    host, port = local(address)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def grpc_problem(
    address: str, timeout: float = TIMEOUT_S, transport: Transport | None = None
) -> str | None:
    """None when the gRPC server at `address` reports SERVING, else why not."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from bookstore import grpcutil

    target = _target(address)
    try:
        async with asyncio.timeout(timeout + 1):
            # The services' channel options. Over plaintext a probe that connects
            # also wakes a client's channel to the same target (gRPC shares their
            # subchannel); TLS channels share none and reconnect within their
            # back-off (grpcutil.CHANNEL_OPTIONS: at most 1 s).
            via = transport or grpcutil.current_transport()
            async with via.channel(target) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
    except grpc.RpcError as exc:
        return f"{target}: {exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else exc}"
    except (OSError, TimeoutError) as exc:
        return f"{target}: {exc or type(exc).__name__}"
    return _grpc_status_problem(target, reply.status)


def grpc_problem_sync(
    address: str, timeout: float = TIMEOUT_S, transport: Transport | None = None
) -> str | None:
    """The blocking `grpc_problem`, for processes without an event loop."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from bookstore import grpcutil

    target = _target(address)
    via = transport or grpcutil.current_transport()
    with via.blocking_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError as exc:
            return f"{target}: {exc.code().name if isinstance(exc, grpc.Call) else exc}"
    return _grpc_status_problem(target, reply.status)


def _grpc_status_problem(target: str, status: int) -> str | None:
    from grpc_health.v1 import health_pb2

    if status == health_pb2.HealthCheckResponse.SERVING:
        return None
    return f"{target}: {health_pb2.HealthCheckResponse.ServingStatus.Name(status)}"


async def grpc_serving(
    address: str, timeout: float = TIMEOUT_S, transport: Transport | None = None
) -> bool:
    """True when the gRPC server at `address` reports SERVING."""
    return await grpc_problem(address, timeout, transport) is None


async def http_problem(address: str, timeout: float = TIMEOUT_S) -> str | None:
    """None when GET /healthz at `address` answers 200, else why not."""
    host, port = local(address)
    url = f"http://{_target(address)}/healthz"
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(
                    f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n"
                    "Connection: close\r\n\r\n".encode()
                )
                await writer.drain()
                status = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (OSError, TimeoutError) as exc:
        return f"{url}: {exc or type(exc).__name__}"
    parts = status.split()
    if len(parts) >= 2 and parts[1] == b"200":
        return None
    return f"{url}: HTTP {parts[1].decode(errors='replace') if len(parts) >= 2 else '?'}"


def http_problem_sync(address: str, timeout: float = TIMEOUT_S) -> str | None:
    """The blocking `http_problem`, for processes without an event loop."""
    url = f"http://{_target(address)}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            status = int(reply.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        return f"{url}: {exc}"
    return None if status == 200 else f"{url}: HTTP {status}"


async def http_healthy(address: str, timeout: float = TIMEOUT_S) -> bool:
    """True when GET /healthz at `address` answers 200."""
    return await http_problem(address, timeout) is None
