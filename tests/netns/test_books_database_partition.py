"""The books database across hosts: a 1|2 partition under write load (needs root).

Each replica runs on its own lab host (its own namespace and 198.18.0.x address);
a client host drives a load of orders (reserve, then commit one copy each)
through the client that follows the primary, recording what each order was told.
The primary is then cut off from the two others (the client still reaches all
three). The checks:

- the minority acknowledges nothing: writes sent to the cut-off replica alone are
  never answered, and its commit index does not move while it is cut off;
- the majority goes on: it elects a primary of a newer view and commits orders;
- after healing, every replica has applied the same log and has the same digest;
- stock is conserved: initial - the copies of committed orders = the stock, never
  negative, and the cut-off replica's own reservations left no trace.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from netlab import Host, Lab
from netns_cluster import AgentClient, wait_until
from tls_support import make_certs

pytestmark = [pytest.mark.netns, pytest.mark.timeout(300)]

IDS = (1, 2, 3)
PORT = 50059  # every replica on its own host, all on one port
INITIAL = 100_000
BOOK = "b001"  # the load's book
UNTOUCHED = "b003"  # only the cut-off replica is asked to reserve it
WORKERS = 4
LOAD_ORDERS = 20  # how many orders the load commits in each phase before it moves on
SETTLE_S = 30.0  # bound on any wait for the replicas
AGENT = Path(__file__).resolve().parent / "netns_stock_agent.py"


class Replicas:
    """Three replicas on their own hosts and the agent on the client host."""

    def __init__(self, lab: Lab, workdir: Path) -> None:
        self.lab = lab
        client = lab.add_host("client")
        self.hosts: dict[int, Host] = {i: lab.add_host(f"db{i}") for i in IDS}
        addresses = {i: f"{h.address}:{PORT}" for i, h in self.hosts.items()}
        base = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONUNBUFFERED": "1",
            "BOOKSTORE_BIND_HOST": "0.0.0.0",
            "BOOKS_DATABASE_ADDRESSES": ",".join(f"{i}={a}" for i, a in addresses.items()),
            "BOOKS_INITIAL_STOCK": str(INITIAL),
            # mutual TLS, with one folder of certificates every host reads
            "BOOKSTORE_TLS_DIR": str(workdir / "tls"),
        }
        make_certs(base)
        for i, host in self.hosts.items():
            data = workdir / f"books-database-{i}"
            data.mkdir(parents=True)
            argv = [sys.executable, "-m", "bookstore", "serve", "books-database"]
            env = {**base, "HOME": str(data), "BOOKSTORE_DATA_DIR": str(data)}
            lab.spawn(host, [*argv, "--replica-id", str(i)], env, f"books-database-{i}")
        home = workdir / "agent"
        home.mkdir()
        config = {
            "replicas": {str(i): a for i, a in addresses.items()},
            "book": BOOK,
            "tls_dir": base["BOOKSTORE_TLS_DIR"],
        }
        process = lab.spawn(
            client,
            [sys.executable, str(AGENT), json.dumps(config)],
            {"PATH": base["PATH"], "HOME": str(home)},
            "agent",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self.agent = AgentClient(process, self.describe)

    def describe(self, lines: int = 15) -> str:
        names = [*(f"books-database-{i}" for i in IDS), "agent"]
        return "\n".join(f"--- {n}\n{self.lab.log_tail(n, lines)}" for n in names)

    def status(self) -> dict[int, dict[str, Any] | None]:
        return {int(i): s for i, s in self.agent.call("status", timeout=10).items()}

    def primary(self, among: tuple[int, ...], newer_than: int = 0) -> tuple[int, int]:
        """(id, view) of a caught-up primary in `among` of a view > `newer_than`."""

        def found() -> tuple[int, int] | None:
            for i, s in self.status().items():
                leads = s is not None and s["role"] == "primary" and s["caught_up"]
                if i in among and leads and s is not None and s["view"] > newer_than:
                    return i, int(s["view"])
            return None

        result: tuple[int, int] = wait_until(
            f"a primary among {among}", found, SETTLE_S, self.describe
        )
        return result

    def committed_in_phase(self, orders: int = LOAD_ORDERS) -> None:
        """Until the load has committed `orders` orders in the current phase."""
        wait_until(
            f"{orders} orders committed",
            lambda: self.agent.call("committed", timeout=10) >= orders,
            SETTLE_S,
            self.describe,
        )

    def converged(self) -> dict[int, dict[str, Any]]:
        def same() -> dict[int, dict[str, Any]] | None:
            statuses = self.status()
            live = {i: s for i, s in statuses.items() if s is not None}
            keys = {(s["applied_index"], s["digest"]) for s in live.values()}
            return live if len(live) == len(IDS) and len(keys) == 1 else None

        result: dict[int, dict[str, Any]] = wait_until(
            "every replica alike", same, SETTLE_S, self.describe
        )
        return result


def test_a_cut_off_primary_acknowledges_nothing_and_all_converge_after_healing(
    lab: Lab, tmp_path: Path
) -> None:
    replicas = Replicas(lab, tmp_path / "work")
    try:
        old, old_view = replicas.primary(IDS)
        replicas.converged()
        replicas.agent.call("load_start", workers=WORKERS)
        replicas.committed_in_phase()

        majority = tuple(i for i in IDS if i != old)
        lab.split([replicas.hosts[old]], [replicas.hosts[i] for i in majority])
        replicas.agent.call("phase", phase="partition")
        new, new_view = replicas.primary(majority, newer_than=old_view)
        print(f"replica {old} cut off (view {old_view}); replica {new} primary of view {new_view}")
        cut_off = replicas.status()[old]  # it may still claim to lead: it cannot commit
        assert cut_off is not None, replicas.describe()
        answers = replicas.agent.call(
            "direct_writes", timeout=60, replica=old, count=5, book=UNTOUCHED, tag="cut"
        )
        assert answers == ["unavailable"] * 5, answers
        replicas.committed_in_phase()  # the majority goes on
        still = replicas.status()[old]
        assert still is not None and still["commit_index"] == cut_off["commit_index"], still

        lab.heal()
        replicas.agent.call("phase", phase="healed")
        replicas.committed_in_phase()
        told = replicas.agent.call("load_stop", timeout=30)
        during = Counter(outcome for phase, outcome in told.values() if phase == "partition")
        print(f"told: {Counter(tuple(v) for v in told.values())}")
        assert during["committed"] > 0, during  # the majority went on

        settled = replicas.agent.call("settle", timeout=120)
        outcomes = Counter(outcome for _, outcome in settled.values())
        assert outcomes["unknown"] == 0 and outcomes["refused"] == 0, outcomes
        alike = replicas.converged()
        print(f"converged at {next(iter(alike.values()))['applied_index']}")
        stock = replicas.agent.call("read", timeout=10, books=[BOOK, UNTOUCHED])
        left = INITIAL - outcomes["committed"]
        assert stock[BOOK] == [left, left] and left >= 0, (stock, outcomes)
        assert stock[UNTOUCHED] == [INITIAL, INITIAL], stock
    finally:
        replicas.agent.close()
