"""The test's hands inside the lab: a client that runs in its own namespace.

    ip netns exec NS python netns_agent.py CONFIG_JSON

CONFIG_JSON: {"orchestrator": "host:port", "queue": "host:port",
"executors": {"1": "host:port", ...}, "grpc": {"name": "host:port", ...},
"http_health": true to also ask the orchestrator's /healthz}.

It reads one JSON request per line on stdin, {"id": N, "op": "...", ...},
and answers one JSON line on stdout, {"id": N, "ok": true, "result": ...}
or {"id": N, "ok": false, "error": "..."}. From its start it also watches
the queue's execution records (WatchExecutions) and keeps every one.
Every call has a deadline; nothing here retries without bound.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, cast

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bookstore import grpcutil
from bookstore.identity.credentials import transport_for
from bookstore.order_queue.client import rpc_error
from bookstore.pb import common_pb2, executor_pb2_grpc, queue_pb2, queue_pb2_grpc
from bookstore.settings import from_env

RPC_TIMEOUT_S = 1.0

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


def record_dict(record: queue_pb2.ExecutionRecord) -> dict[str, Any]:
    return {
        "order_id": record.order_id.value,
        "executor": record.executor,
        "epoch": record.epoch,
        "sequence": record.sequence,
        "executed_at": record.executed_at,
    }


class Agent:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        # The agent enqueues and watches executions: it speaks as the orchestrator.
        settings = from_env({"BOOKSTORE_TLS_DIR": config.get("tls_dir", "")})
        grpcutil.use_transport(transport_for(settings, "orchestrator"))
        self.channels: dict[str, grpc.aio.Channel] = {}
        self.records: list[dict[str, Any]] = []
        self.watch_connects = 0
        self.watching = asyncio.Event()
        self.http = httpx.AsyncClient(base_url=f"http://{config['orchestrator']}")
        self.handlers: dict[str, Handler] = {
            "health": self.health,
            "checkout": self.checkout,
            "enqueue": self.enqueue,
            "executors": self.executors,
            "queue": self.queue_status,
            "order": self.order,
            "records": self.get_records,
            "grpc_health": self.grpc_health,
            "http_get": self.http_get,
        }

    def channel(self, address: str) -> grpc.aio.Channel:
        if address not in self.channels:
            self.channels[address] = grpcutil.channel(address)
        return self.channels[address]

    def queue(self) -> Any:
        return queue_pb2_grpc.OrderQueueStub(self.channel(self.config["queue"]))

    # -- watching executions ------------------------------------------------------

    async def watch(self) -> None:
        """Collect every execution record; reconnect (counted) if the stream breaks."""
        while True:
            try:
                call = self.queue().WatchExecutions(queue_pb2.WatchRequest())
                await call.initial_metadata()
                self.watch_connects += 1
                self.watching.set()
                async for record in call:
                    self.records.append(record_dict(record))
            except grpc.RpcError:
                pass
            self.watching.clear()
            await asyncio.sleep(0.2)

    # -- requests -----------------------------------------------------------------

    async def health(self, request: dict[str, Any]) -> dict[str, bool]:
        """Overall gRPC health of every configured service (and /healthz if asked)."""
        grpc_services = self.config["grpc"]
        results = await asyncio.gather(
            *(self.grpc_health({"target": a}) for a in grpc_services.values())
        )
        health = dict(zip(grpc_services, results, strict=True))
        if self.config["http_health"]:
            health["orchestrator"] = await self.http_get({"url": "/healthz"}) == 200
        return health

    async def grpc_health(self, request: dict[str, Any]) -> bool:
        """The overall gRPC health of request["target"] (as a Kubernetes grpc probe asks)."""
        stub = health_pb2_grpc.HealthStub(self.channel(request["target"]))
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=RPC_TIMEOUT_S)
        except grpc.RpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    async def http_get(self, request: dict[str, Any]) -> int | None:
        """The status code of GET request["url"], None when unreachable."""
        try:
            reply = await self.http.get(request["url"], timeout=RPC_TIMEOUT_S)
        except httpx.HTTPError:
            return None
        return reply.status_code

    async def checkout(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            reply = await self.http.post(
                "/checkout", json=request["body"], timeout=float(request["timeout_s"])
            )
        except httpx.TimeoutException:
            return {"status": None, "error": "timeout"}
        except httpx.HTTPError as exc:
            return {"status": None, "error": type(exc).__name__}
        try:
            body = reply.json()
        except ValueError:
            body = None
        return {"status": reply.status_code, "body": body}

    async def enqueue(self, request: dict[str, Any]) -> dict[str, Any]:
        order = queue_pb2.QueuedOrder(
            order_id=common_pb2.OrderId(value=request["order_id"]),
            items=[common_pb2.OrderItem(book_id="b", title="t", quantity=1)],
            customer_name="lab",
        )
        batch = queue_pb2.EnqueueBatchRequest(enqueues=[queue_pb2.EnqueueRequest(order=order)])
        (outcome,) = (await self.queue().EnqueueBatch(batch, timeout=RPC_TIMEOUT_S)).outcomes
        if outcome.HasField("error"):
            raise rpc_error(outcome.error)
        return {"sequence": outcome.reply.sequence, "duplicate": outcome.reply.duplicate}

    async def executors(self, request: dict[str, Any]) -> dict[str, Any]:
        async def one(address: str) -> dict[str, Any] | None:
            stub = executor_pb2_grpc.OrderExecutorStub(self.channel(address))
            try:
                s = await stub.Status(common_pb2.Empty(), timeout=RPC_TIMEOUT_S / 2)
            except grpc.RpcError:
                return None
            return {
                "role": s.role,
                "leader_id": s.leader_id,
                "epoch": s.epoch,
                "executed": s.executed,
            }

        ids = list(self.config["executors"])
        replies = await asyncio.gather(*(one(self.config["executors"][i]) for i in ids))
        return dict(zip(ids, replies, strict=True))

    async def queue_status(self, request: dict[str, Any]) -> dict[str, Any]:
        s = await self.queue().Status(common_pb2.Empty(), timeout=RPC_TIMEOUT_S)
        return {
            "depth": s.depth,
            "leased": s.leased,
            "executed": s.executed,
            "epoch": s.epoch,
            "leader_id": s.leader_id,
        }

    async def order(self, request: dict[str, Any]) -> dict[str, Any] | None:
        try:
            s = await self.queue().GetOrder(
                common_pb2.OrderId(value=request["order_id"]), timeout=RPC_TIMEOUT_S
            )
        except grpc.RpcError as exc:
            if isinstance(exc, grpc.Call) and exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        execution = record_dict(s.execution) if s.HasField("execution") else None
        return {"state": s.state, "execution": execution}

    async def get_records(self, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("wait_watching"):
            await asyncio.wait_for(self.watching.wait(), timeout=float(request["wait_watching"]))
        return {"records": self.records, "connects": self.watch_connects}

    async def answer(self, line: str) -> None:
        request = json.loads(line)
        try:
            result = await self.handlers[request["op"]](request)
            reply = {"id": request["id"], "ok": True, "result": result}
        except Exception as exc:  # every failure is an answer, never a hang
            reply = {"id": request["id"], "ok": False, "error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


async def main(config: dict[str, Any]) -> None:
    agent = Agent(config)
    watcher = asyncio.create_task(agent.watch())
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    pending: set[asyncio.Task[None]] = set()
    while line := (await reader.readline()).decode():
        task = asyncio.create_task(agent.answer(line))
        pending.add(task)
        task.add_done_callback(pending.discard)
    watcher.cancel()
    for task in list(pending):
        task.cancel()
    await agent.http.aclose()
    for channel in agent.channels.values():
        await channel.close()


if __name__ == "__main__":
    asyncio.run(main(cast("dict[str, Any]", json.loads(sys.argv[1]))))
