"""The whole bookstore spread over lab hosts: one service per namespace.

Each service runs as `python -m bookstore serve SERVICE` in its own host's
namespace, configured only by the environment variables of settings.py:
every *_ADDRESS names the host that runs the service, BOOKSTORE_BIND_HOST is
0.0.0.0 and BOOKSTORE_DATA_DIR a fresh temporary folder. A client host runs
the agent (netns_agent.py), through which the test talks to the services.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from netlab import Host, Lab
from tls_support import make_certs

EXECUTOR_IDS = (1, 2, 3, 4)
EXECUTOR_PORT = 50055  # every replica on its own host, all on one port
# (lab host name, service, port), in address order after the client.
SERVICES = (
    ("orch", "orchestrator", 8081),
    ("tv", "transaction-verification", 50052),
    ("fd", "fraud-detection", 50051),
    ("sug", "suggestions", 50053),
    ("queue", "order-queue", 50054),
    ("pay", "payment", 50062),
)
DATABASE_IDS = (1, 2, 3)
DATABASE_PORT = 50059  # every books-database replica on its own host, all on one port
AGENT = Path(__file__).resolve().parent / "netns_agent.py"


def wait_until(
    what: str, check: Callable[[], Any], timeout: float, describe: Callable[[], str]
) -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds,
    with `describe()` (the logs) in the message."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s (last: {last})\n{describe()}")


class AgentError(AssertionError):
    """The agent did not answer in time, or answered with an error."""


class AgentClient:
    """Sends JSON line requests to the agent and waits (bounded) for the answers."""

    def __init__(self, process: subprocess.Popen[bytes], describe: Callable[[], str]) -> None:
        self.process = process
        self.describe = describe
        self.replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.next_id = 0
        assert process.stdout is not None and process.stdin is not None
        self.stdin: IO[bytes] = process.stdin
        self.reader = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self.reader.start()

    def _read(self, stdout: IO[bytes]) -> None:
        for line in stdout:
            self.replies.put(json.loads(line))
        self.replies.put(None)

    def close(self, timeout: float = 5.0) -> None:
        """End the agent: its stdin closes, it exits, the reader sees the end."""
        with contextlib.suppress(OSError):
            self.stdin.close()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout)
        self.reader.join(timeout=timeout)
        if self.process.stdout is not None and not self.reader.is_alive():
            self.process.stdout.close()

    def call(self, op: str, timeout: float = 5.0, **args: Any) -> Any:
        self.next_id += 1
        request_id = self.next_id
        try:
            self.stdin.write((json.dumps({"id": request_id, "op": op, **args}) + "\n").encode())
            self.stdin.flush()
        except OSError as exc:
            raise AgentError(f"agent gone ({exc})\n{self.describe()}") from exc
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                reply = self.replies.get(timeout=max(0.0, left))
            except queue.Empty:
                raise AgentError(f"no answer to {op} in {timeout} s\n{self.describe()}") from None
            if reply is None:
                raise AgentError(f"agent exited during {op}\n{self.describe()}")
            if reply["id"] != request_id:
                continue  # the late answer to an earlier call that timed out
            if not reply["ok"]:
                raise AgentError(f"{op}: {reply['error']}")
            return reply["result"]


@dataclass
class Cluster:
    lab: Lab
    data_root: Path
    hosts: dict[str, Host] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    agent: AgentClient | None = None

    def build(self) -> None:
        """Create the client, service and executor hosts (addresses in that order)."""
        hosts = ["client", *(s[0] for s in SERVICES), *(f"e{i}" for i in EXECUTOR_IDS)]
        for name in [*hosts, *(f"db{i}" for i in DATABASE_IDS)]:
            self.hosts[name] = self.lab.add_host(name)

    def executor_host(self, replica_id: int) -> Host:
        return self.hosts[f"e{replica_id}"]

    def addresses(self) -> dict[str, str]:
        """service -> host:port, as the services' *_ADDRESS variables say."""
        return {service: f"{self.hosts[h].address}:{port}" for h, service, port in SERVICES}

    def executor_addresses(self) -> dict[int, str]:
        return {i: f"{self.executor_host(i).address}:{EXECUTOR_PORT}" for i in EXECUTOR_IDS}

    def database_addresses(self) -> dict[int, str]:
        return {i: f"{self.hosts[f'db{i}'].address}:{DATABASE_PORT}" for i in DATABASE_IDS}

    def environment(self, data_dir: Path) -> dict[str, str]:
        a = self.addresses()
        executors = ",".join(f"{i}={addr}" for i, addr in self.executor_addresses().items())
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(data_dir),
            "PYTHONUNBUFFERED": "1",
            "ORCHESTRATOR_ADDRESS": a["orchestrator"],
            "TRANSACTION_VERIFICATION_ADDRESS": a["transaction-verification"],
            "FRAUD_DETECTION_ADDRESS": a["fraud-detection"],
            "SUGGESTIONS_ADDRESS": a["suggestions"],
            "ORDER_QUEUE_ADDRESS": a["order-queue"],
            "ORDER_EXECUTOR_ADDRESSES": executors,
            "PAYMENT_ADDRESS": a["payment"],
            "BOOKS_DATABASE_ADDRESSES": ",".join(
                f"{i}={addr}" for i, addr in self.database_addresses().items()
            ),
            "BOOKS_INITIAL_STOCK": "1000000",  # the tests' orders never run out of stock
            "BOOKSTORE_BIND_HOST": "0.0.0.0",
            "BOOKSTORE_DATA_DIR": str(data_dir),
            "BOOKSTORE_TLS_DIR": str(self.data_root / "tls"),  # made by `start`
            "GEMINI_API_KEY": "",  # the rules decide: no AI in this test
        }

    def make_certs(self, env: dict[str, str]) -> Path:
        """The CA and every certificate of the deployment `env` configures, in one
        folder every host reads (as `bookstore certs` makes them for a deployment)."""
        return make_certs({**env, "BOOKSTORE_TLS_DIR": str(self.data_root / "tls")})

    def data_dir(self, name: str) -> Path:
        """A fresh folder for one process's BOOKSTORE_DATA_DIR and HOME."""
        path = self.data_root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def launch(self, host: Host, name: str, argv: list[str], env: dict[str, str]) -> None:
        """Run one service process on the host; its output goes to the log `name`."""
        self.processes[name] = self.lab.spawn(host, argv, env, name)

    def start_service(self, host: Host, service: str, replica_id: int | None = None) -> None:
        name = service if replica_id is None else f"{service}-{replica_id}"
        argv = [sys.executable, "-m", "bookstore", "serve", service]
        if replica_id is not None:
            argv += ["--replica-id", str(replica_id)]
        self.launch(host, name, argv, self.environment(self.data_dir(name)))

    def start(self, services: tuple[str, ...] | None = None) -> None:
        """Start the services (all by default), one per host, and the agent."""
        tls_dir = self.make_certs(self.environment(self.data_root))
        for h, service, _ in SERVICES:
            if services is None or service in services:
                self.start_service(self.hosts[h], service)
        if services is None or "books-database" in services:
            for i in DATABASE_IDS:
                self.start_service(self.hosts[f"db{i}"], "books-database", i)
        if services is None or "order-executor" in services:
            for i in EXECUTOR_IDS:
                self.start_service(self.executor_host(i), "order-executor", i)
        config = {
            "orchestrator": self.addresses()["orchestrator"],
            "queue": self.addresses()["order-queue"],
            "executors": {str(i): a for i, a in self.executor_addresses().items()},
            "http_health": services is None or "orchestrator" in services,
            "tls_dir": str(tls_dir),
            "grpc": {
                **{
                    service: address
                    for service, address in self.addresses().items()
                    if service != "orchestrator" and (services is None or service in services)
                },
                **{
                    f"books-database-{i}": address
                    for i, address in self.database_addresses().items()
                    if services is None or "books-database" in services
                },
            },
        }
        self.start_agent(config)

    def start_agent(self, config: dict[str, Any]) -> None:
        """Run the agent (netns_agent.py) on the client host with this configuration."""
        home = self.data_root / "agent"
        home.mkdir(parents=True, exist_ok=True)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
        process = self.lab.spawn(
            self.hosts["client"],
            [sys.executable, str(AGENT), json.dumps(config)],
            env,
            "agent",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self.agent = AgentClient(process, self.describe)

    def close(self) -> None:
        """Stop the agent (the lab stops the services)."""
        if self.agent is not None:
            self.agent.close()

    def call(self, op: str, timeout: float = 5.0, **args: Any) -> Any:
        assert self.agent is not None, "the cluster is not started"
        return self.agent.call(op, timeout, **args)

    def durable_history(self) -> list[dict[str, Any]]:
        """Every execution the queue has recorded, read from its database (read-only):
        the history that counts, whatever a watcher may have missed."""
        db = self.data_dir("order-queue") / "order-queue" / "queue.db"
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            rows = conn.execute(
                "SELECT order_id, executor, epoch, sequence, executed_at"
                " FROM executions ORDER BY sequence"
            ).fetchall()
        keys = ("order_id", "executor", "epoch", "sequence", "executed_at")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def describe(self, lines: int = 15) -> str:
        """Which processes have exited, and the end of every log."""
        parts = []
        for name, process in self.processes.items():
            state = "running" if process.poll() is None else f"exited {process.returncode}"
            parts.append(f"--- {name} ({state})\n{self.lab.log_tail(name, lines)}")
        parts.append(f"--- agent\n{self.lab.log_tail('agent', lines)}")
        return "\n".join(parts)

    # -- waiting, always bounded -----------------------------------------------------

    def wait_until(self, what: str, check: Callable[[], Any], timeout: float) -> Any:
        """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
        return wait_until(what, check, timeout, self.describe)

    def wait_none_failing(
        self, what: str, failing: Callable[[], list[str]], timeout: float
    ) -> None:
        """Poll `failing` until it returns an empty list; the failure names what still fails."""
        deadline = time.monotonic() + timeout
        while still := failing():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{what}: not within {timeout} s; still failing: {still}\n{self.describe()}"
                )
            time.sleep(0.3)

    def wait_healthy(self, timeout: float = 60.0) -> None:
        def not_serving() -> list[str]:
            # One round asks every service in turn: on a busy machine it takes longer
            # than an agent call's default 5 s; the wait's own bound is what counts.
            health = self.call("health", timeout=timeout)
            return [name for name, ok in health.items() if not ok]

        self.wait_none_failing("every service serving", not_serving, timeout)

    def executors(self) -> dict[int, dict[str, Any] | None]:
        return {int(i): s for i, s in self.call("executors").items()}

    def wait_for_leader(self, leader: int, among: tuple[int, ...], timeout: float) -> int:
        """Wait until `leader` leads with an epoch and every replica in `among`
        (all reachable) follows it. Returns the leader's epoch."""

        def agreed() -> int | None:
            statuses = self.executors()
            chief = statuses.get(leader)
            if chief is None or chief["role"] != "leader" or chief["epoch"] == 0:
                return None
            followers = [statuses.get(i) for i in among]
            if all(s is not None and s["leader_id"] == leader for s in followers):
                return int(chief["epoch"])
            return None

        epoch: int = self.wait_until(f"replica {leader} leading {among}", agreed, timeout)
        return epoch


def order_body(n: int) -> dict[str, Any]:
    """A checkout the rules approve: catalogue books, a valid test card, terms accepted."""
    return {
        "user": {"name": f"Lab Customer {n}", "contact": f"customer{n}@example.org"},
        "creditCard": {"number": "4111111111111111", "expirationDate": "12/39", "cvv": "123"},
        "items": [
            {"name": "Designing Data-Intensive Applications", "quantity": 1},
            {"bookId": "b002", "quantity": 1 + n % 3},
        ],
        "billingAddress": {
            "street": "1 Lab Street",
            "city": "Tartu",
            "state": "Tartumaa",
            "zip": "50090",
            "country": "Estonia",
        },
        "shippingMethod": "Standard",
        "termsAccepted": True,
    }
