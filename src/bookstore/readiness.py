"""Whether `bookstore up`'s services have come up, asked from a short-lived process.

    python -m bookstore.readiness TIMEOUT NAME=KIND:ADDRESS ...   (KIND grpc|http)

polls every service (gRPC health, or GET /healthz for the orchestrator) with the
launcher's certificate, writes "ready NAME" as each one is, and at the deadline
"not-ready NAME ..." (exit code 1). The launcher reads these lines (`spawn`), so the
launcher itself never loads gRPC: it stays small while it supervises.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass
from typing import TextIO

from bookstore import health
from bookstore.parent_death import die_with_parent


@dataclass(frozen=True)
class Target:
    name: str
    address: str
    http: bool = False  # GET /healthz instead of gRPC health

    def arg(self) -> str:
        return f"{self.name}={'http' if self.http else 'grpc'}:{self.address}"

    @classmethod
    def parse(cls, arg: str) -> Target:
        name, _, rest = arg.partition("=")
        kind, _, address = rest.partition(":")
        return cls(name, address, http=kind == "http")


async def healthy(target: Target) -> bool:
    if target.http:
        return await health.http_healthy(target.address)
    return await health.grpc_serving(target.address)


async def probe(targets: list[Target], timeout: float, out: TextIO) -> bool:
    """Poll every target until it is healthy, writing "ready NAME" as each one is;
    at the deadline write "not-ready NAME ..." and return False."""
    deadline = time.monotonic() + timeout
    pending = {t.name: t for t in targets}
    while pending:
        checks = await asyncio.gather(*(healthy(t) for t in pending.values()))
        for target, ok in zip(list(pending.values()), checks, strict=True):
            if ok:
                del pending[target.name]
                out.write(f"ready {target.name}\n")
                out.flush()
        if pending and time.monotonic() >= deadline:
            out.write("not-ready " + " ".join(sorted(pending)) + "\n")
            out.flush()
            return False
        if pending:
            await asyncio.sleep(0.2)
    return True


async def spawn(
    targets: list[Target], timeout: float, env: dict[str, str]
) -> asyncio.subprocess.Process:
    """The probe process, its lines on its stdout."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bookstore.readiness",
        str(timeout),
        *(t.arg() for t in targets),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        env=env,
        preexec_fn=die_with_parent,
    )


def main(argv: list[str]) -> int:
    """The probes present the launcher's certificate (`bookstore up` made it)."""
    from bookstore.identity.credentials import use_identity
    from bookstore.settings import from_env

    use_identity(from_env(), "launcher")
    targets = [Target.parse(arg) for arg in argv[1:]]
    return 0 if asyncio.run(probe(targets, float(argv[0]), sys.stdout)) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
