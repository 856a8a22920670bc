"""The test's hands on the books database inside the lab (a client namespace).

    ip netns exec NS python netns_stock_agent.py CONFIG_JSON

CONFIG_JSON: {"replicas": {"1": "host:port", ...}, "book": "b001"}. Requests and
answers are JSON lines, as netns_agent.py's ({"id", "op", ...} in, {"id", "ok",
"result" | "error"} out). The load orders one copy of the book per transaction
(reserve, then commit) through the client that follows the primary, and records
what each attempt was told, Jepsen style: "committed", "refused" (out of stock) or
"unknown" (no answer in time: it may have happened, never twice, and `settle`
retries it with the same request ids to learn its outcome).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from bookstore import grpcutil
from bookstore.books_database.client import BooksDatabaseClient
from bookstore.identity.credentials import transport_for
from bookstore.settings import from_env

EPOCH = 1
Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class StockAgent:
    def __init__(self, config: dict[str, Any]) -> None:
        # The agent does what the leader executor does with stock (reserve, commit),
        # so it speaks as executor 1.
        settings = from_env({"BOOKSTORE_TLS_DIR": config["tls_dir"]})
        grpcutil.use_transport(transport_for(settings, "order-executor-1"))
        self.addresses = {int(i): a for i, a in config["replicas"].items()}
        self.book = str(config["book"])
        self.db = BooksDatabaseClient(self.addresses, deadline_s=3.0, rpc_timeout_s=1.0)
        self.phase = "before"
        self.outcomes: dict[str, list[str]] = {}  # txn -> [phase, outcome]
        self.stop = asyncio.Event()
        self.workers: list[asyncio.Task[None]] = []
        self.handlers: dict[str, Handler] = {
            "status": self.status,
            "load_start": self.load_start,
            "phase": self.set_phase,
            "load_stop": self.load_stop,
            "committed": self.committed,
            "settle": self.settle,
            "direct_writes": self.direct_writes,
            "read": self.read,
        }

    async def status(self, request: dict[str, Any]) -> dict[str, Any]:
        async def one(i: int) -> dict[str, Any] | None:
            try:
                s = await self.db.status(i)
            except (grpcutil.ServiceUnavailable, grpcutil.Rejected):
                return None
            return {
                "role": s.role,
                "view": s.view,
                "commit_index": s.commit_index,
                "applied_index": s.applied_index,
                "digest": s.digest,
                "caught_up": s.caught_up,
            }

        found = await asyncio.gather(*(one(i) for i in self.addresses))
        return {str(i): s for i, s in zip(self.addresses, found, strict=True)}

    async def _order(self, txn: str) -> str:
        try:
            if not (await self.db.reserve(txn, {self.book: 1}, EPOCH)).ok:
                return "refused"
            await self.db.commit(txn, EPOCH)
        except grpcutil.ServiceUnavailable:
            return "unknown"
        return "committed"

    async def _work(self, worker: int) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            txn = f"w{worker}-{n}"
            self.outcomes[txn] = [self.phase, "unknown"]
            self.outcomes[txn][1] = await self._order(txn)

    async def load_start(self, request: dict[str, Any]) -> int:
        self.stop.clear()
        self.workers = [asyncio.create_task(self._work(w)) for w in range(request["workers"])]
        return len(self.workers)

    async def set_phase(self, request: dict[str, Any]) -> str:
        self.phase = str(request["phase"])
        return self.phase

    async def committed(self, request: dict[str, Any]) -> int:
        """How many of the load's orders were committed in the current phase so far."""
        now = [self.phase, "committed"]
        return sum(1 for told in self.outcomes.values() if told == now)

    async def load_stop(self, request: dict[str, Any]) -> dict[str, list[str]]:
        self.stop.set()
        await asyncio.gather(*self.workers)
        return self.outcomes

    async def settle(self, request: dict[str, Any]) -> dict[str, list[str]]:
        """Retry every unknown order with its own request ids: now it has an outcome."""
        for txn, (_, outcome) in self.outcomes.items():
            if outcome == "unknown":
                self.outcomes[txn][1] = await self._order(txn)
        return self.outcomes

    async def direct_writes(self, request: dict[str, Any]) -> list[str]:
        """Reserve one copy of `book` `count` times at one replica only, never redirected:
        "acknowledged", "refused" (its answer: not enough copies) or "unavailable"."""
        replica = int(request["replica"])
        only = BooksDatabaseClient({replica: self.addresses[replica]}, deadline_s=1.5)
        answers = []
        try:
            for n in range(int(request["count"])):
                txn = f"direct-{replica}-{request['tag']}-{n}"
                try:
                    reserved = await only.reserve(txn, {request["book"]: 1}, EPOCH)
                except grpcutil.ServiceUnavailable:
                    answers.append("unavailable")
                else:
                    answers.append("acknowledged" if reserved.ok else "refused")
        finally:
            await only.close()
        return answers

    async def read(self, request: dict[str, Any]) -> dict[str, list[int]]:
        stock = await self.db.read_stock(list(request["books"]))
        return {b: [s.stock, s.available] for b, s in stock.items()}

    async def answer(self, line: str) -> None:
        request = json.loads(line)
        try:
            result = await self.handlers[request["op"]](request)
            reply = {"id": request["id"], "ok": True, "result": result}
        except Exception as exc:
            reply = {"id": request["id"], "ok": False, "error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


async def main(config: dict[str, Any]) -> None:
    agent = StockAgent(config)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    pending: set[asyncio.Task[None]] = set()
    while line := await reader.readline():
        task = asyncio.create_task(agent.answer(line.decode()))
        pending.add(task)
        task.add_done_callback(pending.discard)
    agent.stop.set()
    await asyncio.gather(*agent.workers, *pending, return_exceptions=True)
    await agent.db.close()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
