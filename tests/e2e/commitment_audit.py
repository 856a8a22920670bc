"""Orders against the whole system and the audit of their two-phase commits.

`Shop` posts checkouts (concurrently, from threads) and records what each was
told. `audit` waits until every acknowledged order is finished, every decision
is finished (a customer is answered at the commit point, before the commits),
the replicas have converged and payment holds nothing in doubt, then reads the
files of the run (read-only, while the services run) and checks, Jepsen style:

- every order answered "Order Approved" was executed: the queue records it
  executed, payment captured it once for the amount the queue recorded;
- every order rejected at execution has a reason and took nothing: no capture;
- payment's captured total = the sum over executed orders;
- for every book, initial stock - the copies of executed orders = the stock on
  every replica, nothing reserved, nothing negative.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
from checkout_requests import CVV, course_page_request
from harness import System
from ports import METRICS_OFFSET
from prometheus_client.parser import text_string_to_metric_families
from tls_support import transport

from bookstore import grpcutil
from bookstore.books_database.client import BooksDatabaseClient
from bookstore.pb import common_pb2, payment_pb2_grpc

WAIT_S = 90.0  # generous: the audit waits for things, it never asserts how fast
DATABASE_IDS = (1, 2, 3)


def order(books: dict[str, int], card: str = "4242424242424242", **changes: Any) -> dict[str, Any]:
    """A clean checkout for `books` (catalogue id -> quantity), paid with `card`."""
    return course_page_request(
        items=[{"bookId": b, "quantity": n} for b, n in books.items()],
        creditCard={"number": card, "expirationDate": "12/39", "cvv": CVV},
        **changes,
    )


@dataclass
class Shop:
    system: System
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)  # order id -> body
    # One client, its connections kept (it is thread-safe): an audit reads every order.
    _client: httpx.Client | None = field(default=None, init=False, repr=False)

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(base_url=self.system.base_url, timeout=60.0)
            weakref.finalize(self, self._client.close)  # closed with the shop
        return self._client

    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        response = self.client.post("/checkout", json=body)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        self.answers[answer["orderId"]] = answer
        return answer

    def post_all(self, bodies: list[dict[str, Any]], workers: int = 16) -> list[dict[str, Any]]:
        """Post concurrently; the answers in the order of `bodies`."""
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(self.post, bodies))

    def order(self, order_id: str) -> dict[str, Any]:
        response = self.client.get(f"/orders/{order_id}", timeout=10.0)
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    def finished(self, order_id: str, timeout: float = WAIT_S) -> dict[str, Any]:
        """GET /orders/{id} once the order is executed or rejected."""
        body = wait_for(lambda: _done(self.order(order_id)), timeout, f"order {order_id}")
        assert isinstance(body, dict)
        return body


def _done(body: dict[str, Any]) -> dict[str, Any] | None:
    if body["status"] == "Order Rejected":
        return body
    execution = body.get("execution") or {}
    return body if execution.get("state") == "executed" else None


def wait_for(probe: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (
            httpx.HTTPError,
            grpc.RpcError,  # a probe's own call (a connection that failed: ask again)
            grpcutil.ServiceUnavailable,
            grpcutil.Rejected,
        ) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.2)
    raise TimeoutError(f"{what}: not within {timeout} s (last: {last!r})")


def _read(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)) as conn:
        return list(conn.execute(sql).fetchall())


def _decisions_due(system: System) -> int:
    """Decisions whose commits or aborts are not all acknowledged yet."""
    queue = system.data_dir / "order-queue" / "queue.db"
    return int(_read(queue, "SELECT COUNT(*) FROM decisions WHERE finished = 0")[0][0])


def _as_launcher(system: System) -> grpcutil.Transport:
    """The operator's identity (mutual TLS with the run's certificates, or plaintext)."""
    return transport(system.env, "launcher")


async def _replicas_converged(system: System) -> bool:
    addresses = dict(
        (int(k), v)
        for k, v in (p.split("=", 1) for p in system.env["BOOKS_DATABASE_ADDRESSES"].split(","))
    )
    client = BooksDatabaseClient(addresses, channel_factory=_as_launcher(system).channel)
    try:
        states = [await client.status(i) for i in DATABASE_IDS]
    except grpcutil.ServiceUnavailable:
        return False
    finally:
        await client.close()
    return len({(s.applied_index, s.digest) for s in states}) == 1


async def _payment_in_doubt(system: System) -> int:
    channel = _as_launcher(system).channel(system.env["PAYMENT_ADDRESS"])
    try:
        stub = payment_pb2_grpc.PaymentStub(channel)
        status = await stub.Status(common_pb2.Empty(), timeout=2.0)
        return int(status.prepared)
    finally:
        await channel.close()


@dataclass(frozen=True)
class Report:
    executed: dict[str, int]  # order id -> amount captured
    rejected: dict[str, str]  # order id -> reason
    stock: dict[int, dict[str, int]]  # replica -> book -> stock


def audit(shop: Shop, initial_stock: Callable[[str], int]) -> Report:
    """Wait until the run is quiet, then check it (see the module's rules)."""
    system = shop.system
    finished = {oid: shop.finished(oid) for oid, a in shop.answers.items() if _acknowledged(a)}
    wait_for(lambda: _decisions_due(system) == 0, WAIT_S, "every decision finished")
    wait_for(lambda: asyncio.run(_replicas_converged(system)), WAIT_S, "replicas converged")
    wait_for(lambda: asyncio.run(_payment_in_doubt(system)) == 0, WAIT_S, "payment in doubt")
    data = system.data_dir
    rows = _read(
        data / "order-queue" / "queue.db",
        "SELECT e.order_id, e.outcome, e.reason, e.amount_cents, o.items"
        " FROM executions e JOIN orders o ON o.order_id = e.order_id",
    )
    executed = {r[0]: int(r[3]) for r in rows if r[1] == "executed"}
    rejected = {r[0]: str(r[2]) for r in rows if r[1] == "rejected"}
    taken: Counter[str] = Counter()
    for r in rows:
        if r[1] == "executed":
            for item in json.loads(r[4]):
                taken[item["bookId"]] += int(item["quantity"])
    ledger = {
        r[0]: (r[1], r[2])
        for r in _read(
            data / "payment" / "ledger.db", "SELECT txn_id, state, amount_cents FROM transactions"
        )
    }
    # Every acknowledged order ended as it was told, and the files agree.
    for order_id, body in finished.items():
        if body["status"] == "Order Approved":
            assert order_id in executed, (order_id, body)
            assert ledger.get(order_id) == ("committed", executed[order_id]), order_id
            assert body["payment"]["amountCents"] == executed[order_id], body
        else:
            assert rejected.get(order_id), (order_id, body)
            assert body["reason"] == rejected[order_id], body
    for order_id in rejected:
        assert ledger.get(order_id, ("absent", 0))[0] != "committed", order_id
    captured = sum(int(a) for s, a in ledger.values() if s == "committed")
    assert captured == sum(executed.values())
    assert {o for o, (s, _) in ledger.items() if s == "committed"} == set(executed)
    stock: dict[int, dict[str, int]] = {}
    for i in DATABASE_IDS:
        table = _read(
            data / f"books-database-{i}.sqlite3", "SELECT book_id, stock, reserved FROM stock"
        )
        stock[i] = {b: int(s) for b, s, _ in table}
        for book_id, s, reserved in table:
            assert reserved == 0, (i, book_id, reserved)
            assert s >= 0 and s == initial_stock(book_id) - taken[book_id], (i, book_id, s)
    return Report(executed, rejected, stock)


def batched(system: System, service: str) -> tuple[float, float]:
    """(calls, requests): how many batched calls the executors made to `service` and how
    many requests those carried, from their bookstore_batched_requests histograms."""
    urls = []
    for entry in system.env["ORDER_EXECUTOR_ADDRESSES"].split(","):
        host, _, port = entry.partition("=")[2].rpartition(":")
        urls.append(f"http://{host}:{int(port) + METRICS_OFFSET}/metrics")
    return batched_at(urls, service)


def batched_at(urls: list[str], service: str) -> tuple[float, float]:
    """(calls, requests) of the batched calls to `service` that the processes whose
    metrics are at `urls` made."""
    calls = requests = 0.0
    for url in urls:
        for family in text_string_to_metric_families(httpx.get(url, timeout=10.0).text):
            for sample in family.samples:
                if family.name != "bookstore_batched_requests" or (
                    sample.labels.get("service") != service
                ):
                    continue
                if sample.name.endswith("_count"):
                    calls += sample.value
                elif sample.name.endswith("_sum"):
                    requests += sample.value
    return calls, requests


def _acknowledged(answer: dict[str, Any]) -> bool:
    """Approved (executed or queued), or rejected at execution: the queue has it."""
    return answer["status"] == "Order Approved" or "execution" in answer


def data_files(data_dir: Path) -> Iterator[Path]:
    """Every file of a run: logs, databases and their write-ahead logs."""
    return (p for p in data_dir.rglob("*") if p.is_file())
