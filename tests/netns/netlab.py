"""A small network of Linux namespaces for multi-host tests (needs root).

One namespace is the switch: it holds a bridge, and one veth port per host.
Each host is a namespace with one interface, `eth0`, an address from
198.18.0.0/15 (reserved for network tests) and no default route, so nothing
it sends can leave the lab. Faults are made in the switch, as on a real one:
a host's port set down cuts the host off; an nftables bridge filter drops
the frames between two groups of ports (a partition) while every other port
still reaches both groups.

Names carry this process's pid and a random suffix, so concurrent runs never
meet, and a later run can remove what a killed run left behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PREFIX = "bsnet"
# `ip netns exec NS` bind-mounts the files in /etc/netns/NS/ over /etc/ (for hosts).
ETC_NETNS = Path("/etc/netns")
SUBNET_PREFIX_LEN = 24
COMMAND_TIMEOUT_S = 10.0
_OURS = re.compile(rf"^{PREFIX}-(\d+)-[0-9a-f]+-")


class LabError(RuntimeError):
    """A command that builds or changes the lab failed."""


def run_ip(*args: str, stdin: str | None = None) -> str:
    """Run a command (ip, nft) with a timeout; raise LabError naming it on failure."""
    try:
        result = subprocess.run(
            list(args),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{' '.join(args)}: timed out") from exc
    if result.returncode != 0:
        raise LabError(f"{' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def namespaces() -> list[str]:
    """Every network namespace name (`ip netns list`)."""
    return [line.split()[0] for line in run_ip("ip", "netns", "list").splitlines() if line]


def namespace_pids(namespace: str) -> list[int]:
    try:
        out = run_ip("ip", "netns", "pids", namespace)
    except LabError:
        return []
    return [int(p) for p in out.split() if p.isdigit()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_all(pids: Sequence[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def remove_abandoned() -> list[str]:
    """Delete the namespaces of earlier runs whose process is gone."""
    removed = []
    for name in namespaces():
        match = _OURS.match(name)
        if match and not _alive(int(match.group(1))):
            _kill_all(namespace_pids(name))
            shutil.rmtree(ETC_NETNS / name, ignore_errors=True)
            with contextlib.suppress(LabError):
                run_ip("ip", "netns", "delete", name)
                removed.append(name)
    return removed


@dataclass
class Host:
    name: str  # short: also the switch port's name suffix
    namespace: str
    address: str
    port: str  # the host's port on the switch bridge


@dataclass
class Lab:
    """The switch and its hosts; `close()` removes everything it made."""

    workdir: Path
    tag: str = field(default_factory=lambda: f"{PREFIX}-{os.getpid()}-{secrets.token_hex(3)}")
    hosts: dict[str, Host] = field(default_factory=dict)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _made: list[str] = field(default_factory=list)
    _next_address: int = 10
    _split: bool = False

    @property
    def switch(self) -> str:
        return f"{self.tag}-switch"

    def start(self) -> None:
        remove_abandoned()
        self._add_namespace(self.switch)
        run_ip("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
        run_ip("ip", "-n", self.switch, "link", "set", "br0", "up")

    def _add_namespace(self, namespace: str) -> None:
        run_ip("ip", "netns", "add", namespace)
        self._made.append(namespace)
        run_ip("ip", "-n", namespace, "link", "set", "lo", "up")

    def add_host(self, name: str) -> Host:
        """A new host on the switch, with the next free address."""
        if not re.fullmatch(r"[a-z0-9]{1,10}", name) or name in self.hosts:
            raise ValueError(f"bad or duplicate host name {name!r}")
        if self._next_address > 250:
            raise LabError("the lab's /24 is full")
        host = Host(
            name=name,
            namespace=f"{self.tag}-{name}",
            address=f"198.18.0.{self._next_address}",
            port=f"p-{name}",
        )
        self._next_address += 1
        self._add_namespace(host.namespace)
        ns, sw = host.namespace, self.switch
        run_ip("ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", host.port,
               "netns", sw)  # fmt: skip
        run_ip("ip", "-n", sw, "link", "set", host.port, "master", "br0")
        run_ip("ip", "-n", sw, "link", "set", host.port, "up")
        run_ip("ip", "-n", ns, "addr", "add", f"{host.address}/{SUBNET_PREFIX_LEN}", "dev", "eth0")
        run_ip("ip", "-n", ns, "link", "set", "eth0", "up")
        self.hosts[name] = host
        return host

    def spawn(
        self,
        host: Host,
        argv: Sequence[str],
        env: Mapping[str, str],
        log_name: str,
        *,
        stdin: int | None = subprocess.DEVNULL,
        stdout: int | None = None,
    ) -> subprocess.Popen[bytes]:
        """Run argv inside the host's namespace; stderr (and stdout unless piped) to a log."""
        log = (self.workdir / f"{log_name}.log").open("ab")
        try:
            process = subprocess.Popen(
                ["ip", "netns", "exec", host.namespace, *argv],
                env=dict(env),
                stdin=stdin,
                stdout=log if stdout is None else stdout,
                stderr=log,
                start_new_session=True,
            )
        finally:
            log.close()
        self.processes.append(process)
        return process

    def log_tail(self, log_name: str, lines: int = 30) -> str:
        path = self.workdir / f"{log_name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def resolve(self, names: Mapping[str, str]) -> None:
        """Give every host the same /etc/hosts: each name -> its address (like DNS)."""
        lines = ["127.0.0.1 localhost", *(f"{addr} {name}" for name, addr in names.items())]
        for host in self.hosts.values():
            folder = ETC_NETNS / host.namespace
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "hosts").write_text("\n".join(lines) + "\n")

    def run_in(
        self, host: Host, argv: Sequence[str], env: Mapping[str, str], timeout: float = 20.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a short command inside the host's namespace and wait (bounded) for it."""
        return subprocess.run(
            ["ip", "netns", "exec", host.namespace, *argv],
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    # --- faults, made in the switch -------------------------------------------------------

    def cut(self, host: Host) -> None:
        """Unplug the host: its switch port goes down (carrier lost at both ends)."""
        run_ip("ip", "-n", self.switch, "link", "set", host.port, "down")

    def restore(self, host: Host) -> None:
        run_ip("ip", "-n", self.switch, "link", "set", host.port, "up")

    def split(self, left: Sequence[Host], right: Sequence[Host]) -> None:
        """Drop every frame between the two groups; other ports still reach both."""
        lefts = ", ".join(f'"{h.port}"' for h in left)
        rights = ", ".join(f'"{h.port}"' for h in right)
        rules = (
            f"table bridge {PREFIX}split {{\n"
            "  chain forward {\n"
            "    type filter hook forward priority 0; policy accept;\n"
            f"    iifname {{ {lefts} }} oifname {{ {rights} }} drop\n"
            f"    iifname {{ {rights} }} oifname {{ {lefts} }} drop\n"
            "  }\n"
            "}\n"
        )
        run_ip("ip", "netns", "exec", self.switch, "nft", "-f", "-", stdin=rules)
        self._split = True

    def heal(self) -> None:
        if self._split:
            table = f"{PREFIX}split"
            run_ip("ip", "netns", "exec", self.switch, "nft", "delete", "table", "bridge", table)
            self._split = False

    # --- cleanup --------------------------------------------------------------------------

    def stop_processes(self, grace_s: float = 3.0) -> None:
        """SIGTERM each process (its whole session), then SIGKILL what is left."""
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for process in self.processes:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                process.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=5)
            if process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.close()

    def close(self) -> None:
        """Stop every process and delete every namespace made (links and bridge go too)."""
        errors = []
        try:
            self.stop_processes()
        finally:
            for namespace in reversed(self._made):
                _kill_all(namespace_pids(namespace))
                shutil.rmtree(ETC_NETNS / namespace, ignore_errors=True)
                try:
                    run_ip("ip", "netns", "delete", namespace)
                except LabError as exc:
                    errors.append(str(exc))
            self._made.clear()
            self.hosts.clear()
        if errors:
            raise LabError("; ".join(errors))


# --- for the tests' fixtures ---------------------------------------------------------------


def require_root_and_tools() -> None:
    """Not root: skip with a message, but fail under CI. A missing tool always fails."""
    if os.geteuid() != 0:
        message = "the multi-host tests build network namespaces and need root"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI runs as root)")
        pytest.skip(message)
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: install {package} (scripts/install --dev does)")


def open_lab(workdir: Path) -> Lab:
    require_root_and_tools()
    lab = Lab(workdir=workdir)
    try:
        lab.start()
    except BaseException:
        lab.close()
        raise
    return lab


def close_lab(lab: Lab) -> None:
    tag = lab.tag
    lab.close()
    left = [n for n in namespaces() if n.startswith(tag)]
    assert not left, f"namespaces left behind: {left}"
