"""The whole system under test: `bookstore up --no-color` on free loopback ports.

    with start_system({"ORDER_EXECUTOR_WORK_S": "0.05"}) as system:
        httpx.post(system.base_url + "/checkout", ...)
        os.kill(system.pid("fraud-detection"), signal.SIGKILL)
        system.wait_restarted("fraud-detection", old_pid)

The launcher's whole output (every service's log) goes to `system.log_path`;
`system.log()` reads it. Leaving the block stops the launcher with SIGTERM and
kills anything that survived (`system.stop()` returns the survivors' pids, so a
test can assert there were none). Importable as a plain module from any test
(tests/e2e is on sys.path) and from bench/.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from ports import free_ports

READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0
EXECUTOR_IDS = (1, 2, 3, 4)
DATABASE_IDS = (1, 2, 3)
_STARTED = re.compile(r"launcher\s+\| started (\S+) pid=(\d+)")
_PR_SET_PDEATHSIG = 1


def system_env(data_dir: Path, extra_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a system on fresh free ports, its state under `data_dir`."""
    ports = free_ports(6 + len(EXECUTOR_IDS) + len(DATABASE_IDS))
    executor_ports = ports[6 : 6 + len(EXECUTOR_IDS)]
    database_ports = ports[6 + len(EXECUTOR_IDS) :]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI_", "GOOGLE_API"))}
    env.update(
        {
            "ORCHESTRATOR_ADDRESS": f"127.0.0.1:{ports[0]}",
            "TRANSACTION_VERIFICATION_ADDRESS": f"127.0.0.1:{ports[1]}",
            "FRAUD_DETECTION_ADDRESS": f"127.0.0.1:{ports[2]}",
            "SUGGESTIONS_ADDRESS": f"127.0.0.1:{ports[3]}",
            "ORDER_QUEUE_ADDRESS": f"127.0.0.1:{ports[4]}",
            "ORDER_EXECUTOR_ADDRESSES": ",".join(
                f"{rid}=127.0.0.1:{port}"
                for rid, port in zip(EXECUTOR_IDS, executor_ports, strict=True)
            ),
            "BOOKS_DATABASE_ADDRESSES": ",".join(
                f"{rid}=127.0.0.1:{port}"
                for rid, port in zip(DATABASE_IDS, database_ports, strict=True)
            ),
            "PAYMENT_ADDRESS": f"127.0.0.1:{ports[5]}",
            "BOOKSTORE_DATA_DIR": str(data_dir),
            "BOOKSTORE_BIND_HOST": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra_env or {})
    return env


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def children(pid: int) -> list[int]:
    """The pids of the processes `pid` started."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


@dataclass
class System:
    env: dict[str, str]
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    all_pids: set[int] = field(default_factory=set)

    @property
    def base_url(self) -> str:
        return "http://" + self.env["ORCHESTRATOR_ADDRESS"]

    def address(self, variable: str) -> str:
        return self.env[variable]

    def log(self, since: int = 0) -> str:
        """The launcher's output from byte `since` on (see `log_size`)."""
        with self.log_path.open("rb") as log:
            log.seek(since)
            return log.read().decode("utf-8", errors="replace")

    def log_size(self) -> int:
        """Where the output ends now: `log(since=...)` then reads what came later."""
        return self.log_path.stat().st_size

    def pids(self) -> dict[str, int]:
        """The latest pid the launcher started for each service ("order-executor-3")."""
        latest: dict[str, int] = {}
        for name, pid in _STARTED.findall(self.log()):
            latest[name] = int(pid)
            self.all_pids.add(int(pid))
        return latest

    def pid(self, name: str) -> int:
        return self.pids()[name]

    def wait_restarted(self, name: str, old_pid: int, timeout: float = 30.0) -> int:
        """The service's new pid once the launcher restarted it and it is healthy again."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self.pids().get(name)
            if pid is not None and pid != old_pid and alive(pid):
                return pid
            time.sleep(0.1)
        raise TimeoutError(f"{name} was not restarted within {timeout} s")

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until /api/cluster reports every service healthy."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                last = httpx.get(self.base_url + "/api/cluster", timeout=3.0).json()
                if all(s["healthy"] for s in last["services"]):
                    return
            time.sleep(0.2)
        raise TimeoutError(f"not every service healthy within {timeout} s: {last}")

    def wait_settled(self, timeout: float = 120.0) -> None:
        """Until every service is healthy and the highest executor leads (Bully's resting
        state): how a test that killed or paused a process leaves a shared system."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                last = httpx.get(self.base_url + "/api/cluster", timeout=3.0).json()
                if _settled(last):
                    return
            time.sleep(0.2)
        raise TimeoutError(f"the system did not settle within {timeout} s: {last}")

    def stop(self) -> list[int]:
        """Stop the launcher (SIGTERM) and return the pids that survived it (then killed)."""
        self.pids()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.pids()
        deadline = time.monotonic() + 3.0
        survivors = [pid for pid in self.all_pids if alive(pid)]
        while survivors and time.monotonic() < deadline:
            time.sleep(0.05)
            survivors = [pid for pid in survivors if alive(pid)]
        for pid in survivors:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return survivors


def _settled(cluster: dict[str, Any]) -> bool:
    """Every service healthy, every executor and books-database replica alive, a books
    primary, and the highest executor leading in everyone's eyes."""
    top = max(EXECUTOR_IDS)
    leader = cluster["leader"]
    return (
        all(s["healthy"] for s in cluster["services"])
        and all(e["alive"] and e["leaderId"] == top for e in cluster["executors"])
        and all(r["alive"] for r in cluster["database"]["replicas"])
        and cluster["database"]["primary"] is not None
        and leader is not None
        and leader["replicaId"] == top
    )


def _wait_ready(system: System, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = system.log()
        if "all services ready" in text:
            system.pids()
            return
        if system.process.poll() is not None:
            raise RuntimeError(
                f"the launcher exited ({system.process.returncode}):\n{text[-4000:]}"
            )
        time.sleep(0.1)
    raise TimeoutError(f"the system was not ready in {timeout} s:\n{system.log()[-4000:]}")


def launch(
    extra_env: Mapping[str, str] | None = None,
    data_dir: Path | None = None,
    python: str = sys.executable,
) -> System:
    """Start the system and wait until it is ready; the caller must `stop()` it.

    `python` is the interpreter whose installed bookstore runs (the suite's own, or
    a fresh runtime-only environment's)."""
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="bookstore-e2e-"))
    env = system_env(data_dir, extra_env)
    log_path = data_dir / "launcher.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [python, "-m", "bookstore", "up", "--no-color"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    system = System(env=env, data_dir=data_dir, log_path=log_path, process=process)
    try:
        _wait_ready(system, READY_TIMEOUT_S)
    except BaseException:
        system.stop()
        raise
    return system


def stop_system(system: System, keep_data: bool = False) -> None:
    """Stop the system and remove its data; fail if a process survived the launcher."""
    survivors = system.stop()
    if not keep_data:
        shutil.rmtree(system.data_dir, ignore_errors=True)
    if survivors:
        raise AssertionError(f"processes survived the launcher's stop: {survivors}")


@contextlib.contextmanager
def start_system(
    extra_env: Mapping[str, str] | None = None, keep_data: bool = False
) -> Iterator[System]:
    """The running system for the block; stopped (and its data removed) afterwards."""
    system = launch(extra_env)
    try:
        yield system
    finally:
        stop_system(system, keep_data)
