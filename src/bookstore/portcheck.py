"""Before `bookstore up` starts anything: is every port it will listen on free?

A second `bookstore up` (or anything else holding a port) would otherwise start
services that fail to bind and restart forever, while its orchestrator talks to
the first system's services. So every local address is tried first, and a port
that is taken is named with, where Linux tells us, the process holding it:
the listening socket's inode from /proc/net/tcp{,6}, then the process whose
/proc/PID/fd links to that socket (falling back to `ss -ltnp`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bookstore.launcher import services_of
from bookstore.settings import Settings, split_address

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp
_WILDCARDS = ("", "0.0.0.0", "::")


@dataclass(frozen=True)
class Busy:
    service: str
    host: str
    port: int
    holder: str  # "pid 123 (python -m bookstore serve order-queue)", or "" if unknown
    problem: str = "is in use"  # or why it cannot be bound at all

    def __str__(self) -> str:
        who = f" by {self.holder}" if self.holder else ""
        return f"port {self.port} ({self.service}, {self.host}:{self.port}) {self.problem}{who}"


def binds_of(settings: Settings) -> list[tuple[str, str, int]]:
    """(service name, host, port) of every service this machine would run."""
    binds = []
    for spec in services_of(settings):
        bind = settings.bind_address(spec.service, spec.replica_id)
        host, port = split_address(bind, "BOOKSTORE_BIND_HOST")
        binds.append((spec.name, host, port))
    return binds


def _bind_error(host: str, port: int) -> OSError | None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # As the services bind (TIME_WAIT leftovers of a stopped run are no conflict).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host or "0.0.0.0", port))
        except OSError as exc:
            return exc
    return None


def _listening_inodes(port: int, proc: Path) -> set[str]:
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in (proc / "net" / table).read_text().splitlines()[1:]:
                fields = line.split()
                listening = len(fields) > 9 and fields[3] == _LISTEN
                if listening and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    return inodes


def _describe(pid: str, proc: Path) -> str:
    try:
        raw = (proc / pid / "cmdline").read_bytes()
    except OSError:
        return f"pid {pid}"
    command = " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)
    if len(command) > 120:
        command = command[:117] + "..."
    return f"pid {pid} ({command})" if command else f"pid {pid}"


def _holder_from_proc(port: int, proc: Path) -> str:
    targets = {f"socket:[{inode}]" for inode in _listening_inodes(port, proc)}
    if not targets:
        return ""
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in targets:
                        return _describe(entry.name, proc)
    return ""


def _holder_from_ss(port: int) -> str:
    ss = shutil.which("ss")
    if ss is None:
        return ""
    try:
        out = subprocess.run(
            [ss, "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, timeout=2
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    match = re.search(r'users:\(\("([^"]*)",pid=(\d+)', out)
    return f"pid {match.group(2)} ({match.group(1)})" if match else ""


def holder_of(port: int, proc: Path = Path("/proc")) -> str:
    """Who listens on TCP `port` on this machine, or "" when it cannot be told."""
    return _holder_from_proc(port, proc) or _holder_from_ss(port)


def busy_ports(settings: Settings) -> list[Busy]:
    """Every port a service of `bookstore up` would listen on that is taken."""
    busy = []
    for service, host, port in binds_of(settings):
        error = _bind_error(host, port)
        if error is None:
            continue
        if error.errno == errno.EADDRINUSE:
            busy.append(Busy(service, host or "0.0.0.0", port, holder_of(port)))
        else:
            busy.append(Busy(service, host, port, "", f"cannot be bound: {error.strerror}"))
    return busy
