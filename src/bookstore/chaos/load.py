"""The load button: a bounded stream of checkouts from inside the orchestrator,
sent over its own HTTP API (the whole path: checks, queue, execution), and the
audit of what became of them.

Every fourth order is rejected (an expired card), every third is large (more
copies, so the queue ranks it differently). The audit follows Jepsen: an order
answered "Order Approved" is acknowledged and must be executed exactly once; an
order with no clear answer (503, a timeout) is unknown, neither lost nor counted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bookstore import health

log = logging.getLogger(__name__)

MAX_RATE = 50  # orders per second
MAX_DURATION_S = 120.0
REQUEST_TIMEOUT_S = 30.0
SETTLE_S = 30.0  # how long the audit waits for acknowledged orders to be executed
APPROVED_CARD = "4242424242424242"


def order_body(n: int) -> dict[str, Any]:
    """The n-th generated order: a mix of approved and rejected, small and large."""
    rejected = n % 4 == 3
    large = n % 3 == 2
    items = (
        [{"name": "Book A", "quantity": 7}, {"name": "Book B", "quantity": 5}]
        if large
        else [{"name": "Book A", "quantity": 1}]
    )
    return {
        "user": {"name": f"Load {n}", "contact": "load@example.com"},
        "creditCard": {
            "number": APPROVED_CARD,
            "expirationDate": "01/20" if rejected else "12/39",
            "cvv": "123",
        },
        "items": items,
        "billingAddress": {
            "street": "1 Load Lane",
            "city": "Tartu",
            "state": "",
            "zip": "50090",
            "country": "Estonia",
        },
        "shippingMethod": "Standard",
        "termsAccepted": True,
    }


async def post_json(address: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST a JSON body over HTTP/1.1 (one connection per request)."""
    host, port = health.local(address)
    data = json.dumps(body).encode()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode() + data)
        await writer.drain()
        raw = await reader.read()
    finally:
        writer.close()
    status_line, _, rest = raw.partition(b"\r\n")
    _, _, payload = rest.partition(b"\r\n\r\n")
    answer = json.loads(payload) if payload else {}
    return int(status_line.split()[1]), answer if isinstance(answer, dict) else {}


@dataclass
class Sent:
    n: int
    order_id: str | None = None
    outcome: str = "pending"  # approved | rejected | unknown


@dataclass(frozen=True)
class Audit:
    sent: int
    acknowledged: int
    executed: int
    rejected: int
    unknown: int
    lost: int
    doubled: int
    longest_gap_s: float  # the longest time without an execution, from the first send

    def as_json(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "acknowledged": self.acknowledged,
            "executed": self.executed,
            "rejected": self.rejected,
            "unknown": self.unknown,
            "lost": self.lost,
            "doubled": self.doubled,
            "longestGapS": round(self.longest_gap_s, 3),
        }

    def lines(self) -> list[str]:
        return [
            f"orders sent          {self.sent}",
            f"acknowledged         {self.acknowledged}",
            f"executed             {self.executed}",
            f"rejected             {self.rejected}",
            f"unknown (no answer)  {self.unknown}",
            f"lost                 {self.lost}",
            f"doubled              {self.doubled}",
            f"longest time without an execution  {self.longest_gap_s:.2f} s",
        ]


# (state, executed_at) of an order in the queue, or None; raises when unreachable.
StatusOf = Callable[[str], Awaitable[tuple[str, str | None] | None]]


@dataclass
class LoadRun:
    rate: float
    duration_s: float
    address: str
    status_of: StatusOf
    executions_of: Callable[[str], int]
    sent: list[Sent] = field(default_factory=list)
    started_at: float = 0.0  # wall clock (time.time()) of the first send
    done: bool = False
    audit: Audit | None = None

    async def run(self, settle_s: float = SETTLE_S) -> Audit:
        """Send the orders at the rate, wait for their answers, then audit them."""
        loop = asyncio.get_running_loop()
        count = max(1, int(self.rate * self.duration_s))
        t0 = loop.time()
        self.started_at = time.time()
        tasks = []
        for n in range(count):
            delay = t0 + n / self.rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            sent = Sent(n)
            self.sent.append(sent)
            tasks.append(asyncio.create_task(self._send(sent)))
        await asyncio.gather(*tasks)
        self.audit = await self._audit(settle_s)
        self.done = True
        return self.audit

    async def _send(self, sent: Sent) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                code, answer = await post_json(self.address, "/checkout", order_body(sent.n))
        except (OSError, TimeoutError, ValueError) as exc:
            log.info("load: order %d has no answer (%s)", sent.n, exc)
            sent.outcome = "unknown"
            return
        sent.order_id = answer.get("orderId")
        status = answer.get("status")
        if code == 200 and status == "Order Approved":
            sent.outcome = "approved"
        elif code == 200 and status == "Order Rejected":
            sent.outcome = "rejected"
        else:
            sent.outcome = "unknown"

    async def _audit(self, settle_s: float) -> Audit:
        acked = [s.order_id for s in self.sent if s.outcome == "approved" and s.order_id]
        executed_at: dict[str, str] = {}
        deadline = asyncio.get_running_loop().time() + settle_s
        while True:
            for order_id in acked:
                if order_id in executed_at:
                    continue
                try:
                    state = await self.status_of(order_id)
                except Exception as exc:  # the queue is down: ask again until the deadline
                    log.info("load audit: %s", exc)
                    break
                if state is not None and state[0] == "executed" and state[1]:
                    executed_at[order_id] = state[1]
            if len(executed_at) == len(acked) or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.5)
        return Audit(
            sent=len(self.sent),
            acknowledged=len(acked),
            executed=len(executed_at),
            rejected=sum(s.outcome == "rejected" for s in self.sent),
            unknown=sum(s.outcome == "unknown" for s in self.sent),
            lost=len(acked) - len(executed_at),
            doubled=sum(self.executions_of(o) > 1 for o in acked),
            longest_gap_s=longest_gap(self.started_at, list(executed_at.values())),
        )

    def as_json(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for s in self.sent:
            counts[s.outcome] = counts.get(s.outcome, 0) + 1
        return {
            "rate": self.rate,
            "durationS": self.duration_s,
            "sent": len(self.sent),
            "outcomes": counts,
            "done": self.done,
            "audit": self.audit.as_json() if self.audit else None,
        }


def longest_gap(start: float, executed_at: list[str]) -> float:
    """The longest stretch, from `start` (epoch seconds), with no execution."""
    times = sorted(
        datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() for t in executed_at
    )
    gaps = [b - a for a, b in zip([start, *times], times, strict=False)]
    return max(gaps, default=0.0)
