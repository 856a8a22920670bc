"""Container health check: is the bookstore service in this container serving?

    bookstore-healthcheck [SERVICE [--replica-id N]]

Without arguments it reads the service from PID 1's command line (the
container's `bookstore serve SERVICE [--replica-id N]`). It asks the service
the same question the launcher and Kubernetes ask (see `bookstore.health`):
gRPC health, or GET /healthz for the orchestrator. The port comes from the same
settings the service read (its *_ADDRESS variables). With TLS on it presents
the service's own certificate (mounted in its container, see README's service
identity). Exit 0 when serving, 1 otherwise, with one line saying why.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from bookstore import health
from bookstore.identity import identity_of
from bookstore.identity.credentials import transport_for
from bookstore.settings import SERVICES, SettingsError, from_env

TIMEOUT_S = 3.0


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
    address = settings.bind_address(service, replica_id)
    if service == "orchestrator":
        return health.http_problem_sync(address, TIMEOUT_S)
    via = transport_for(settings, identity_of(settings, service, replica_id).name)
    return health.grpc_problem_sync(address, TIMEOUT_S, via)


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        service, replica_id = parse_target(args if args else pid1_command())
        problem = check(service, replica_id)
    except (ValueError, SettingsError, OSError) as exc:  # a missing certificate too
        problem = str(exc)
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
