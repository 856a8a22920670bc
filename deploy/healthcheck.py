#!/usr/bin/env python3
"""Container health check: is the bookstore service in this container serving?

    bookstore-healthcheck [SERVICE [--replica-id N]]

Without arguments it reads the service from PID 1's command line (the
container's `bookstore serve SERVICE [--replica-id N]`). It asks the service
the same question the launcher and Kubernetes ask: the gRPC health protocol
(grpc.health.v1, overall status "") or, for the orchestrator, GET /healthz.
The port comes from the same settings the service read (its *_ADDRESS
variables). Exit 0 when serving, 1 otherwise, with one line saying why.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bookstore.settings import SERVICES, SettingsError, from_env

TIMEOUT_S = 3.0
_ANY_HOST = ("", "0.0.0.0", "::", "[::]")


def parse_target(argv: Sequence[str]) -> tuple[str, int | None]:
    """(service, replica id) from `[...] serve SERVICE [--replica-id N]` or `SERVICE [...]`."""
    args = list(argv)
    if "serve" in args:
        args = args[args.index("serve") + 1 :]
    if not args or args[0] not in SERVICES:
        raise ValueError(f"no bookstore service in {' '.join(argv)!r}")
    service, replica_id = args[0], None
    for i, arg in enumerate(args):
        if arg == "--replica-id" and i + 1 < len(args):
            replica_id = int(args[i + 1])
        elif arg.startswith("--replica-id="):
            replica_id = int(arg.partition("=")[2])
    return service, replica_id


def pid1_command() -> list[str]:
    raw = Path("/proc/1/cmdline").read_bytes()
    return [part.decode() for part in raw.split(b"\0") if part]


def check(service: str, replica_id: int | None) -> str | None:
    """None when the service is serving, else why not."""
    settings = from_env()
    bind = settings.bind_address(service, replica_id)
    host, _, port = bind.rpartition(":")
    if host in _ANY_HOST:
        host = "127.0.0.1"
    if service == "orchestrator":
        url = f"http://{host}:{port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as reply:
                status = int(reply.status)
        except (urllib.error.URLError, OSError) as exc:
            return f"{url}: {exc}"
        return None if status == 200 else f"{url}: HTTP {status}"
    target = f"{host}:{port}"
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT_S)
        except grpc.RpcError as exc:
            return f"{target}: {exc.code().name if isinstance(exc, grpc.Call) else exc}"
    serving = health_pb2.HealthCheckResponse.SERVING
    if reply.status != serving:
        return f"{target}: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}"
    return None


def main(argv: Sequence[str]) -> int:
    try:
        service, replica_id = parse_target(argv if argv else pid1_command())
        problem = check(service, replica_id)
    except (ValueError, SettingsError, OSError) as exc:
        problem = str(exc)
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
