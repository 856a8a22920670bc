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


def _listening_inodes(ports: set[int], proc: Path) -> dict[str, int]:
    """The inodes of the sockets listening on `ports`: inode -> port."""
    inodes: dict[str, int] = {}
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in (proc / "net" / table).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) <= 9 or fields[3] != _LISTEN:
                    continue
                port = int(fields[1].rsplit(":", 1)[1], 16)
                if port in ports:
                    inodes[fields[9]] = port
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


def _holders_from_proc(ports: set[int], proc: Path) -> dict[int, str]:
    """Who listens on each of `ports`, in one pass over every process's descriptors."""
    targets = {f"socket:[{inode}]": port for inode, port in _listening_inodes(ports, proc).items()}
    found: dict[int, str] = {}
    if not targets:
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    port = targets.get(os.readlink(fd))
                    if port is not None and port not in found:
                        found[port] = _describe(entry.name, proc)
        if len(found) == len(set(targets.values())):
            break
    return found


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


def busy_ports(settings: Settings) -> list[Busy]:
    """Every port a service of `bookstore up` would listen on that is taken."""
    errors = [(s, h, p, e) for s, h, p in binds_of(settings) if (e := _bind_error(h, p))]
    in_use = {p for _, _, p, e in errors if e.errno == errno.EADDRINUSE}
    holders = _holders_from_proc(in_use, Path("/proc")) if in_use else {}
    busy = []
    for service, host, port, error in errors:
        if error.errno == errno.EADDRINUSE:
            holder = holders.get(port) or _holder_from_ss(port)
            busy.append(Busy(service, host or "0.0.0.0", port, holder))
        else:
            busy.append(Busy(service, host, port, "", f"cannot be bound: {error.strerror}"))
    return busy
