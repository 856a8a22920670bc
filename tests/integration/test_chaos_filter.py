"""The message filter in real gRPC: a server made by grpcutil and a channel from
its channel helper, with rules between the two processes they stand for."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bookstore import grpcutil
from bookstore.chaos import filter as chaos_filter
from bookstore.chaos.rules import Action, Rule, RuleTable

CLIENT, SERVER = "order-executor-3", "order-queue"


@pytest.fixture
async def stub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[health_pb2_grpc.HealthStub, Path]]:
    rules = tmp_path / "rules.json"
    monkeypatch.setattr(chaos_filter, "RELOAD_S", 0.0)
    monkeypatch.setattr(chaos_filter, "_FILTER", None)
    chaos_filter.configure(SERVER, rules)
    server, health, port = grpcutil.create_server("127.0.0.1:0", lambda s: None, [])
    await server.start()
    await grpcutil.set_serving(health, [])
    chaos_filter.configure(CLIENT, rules)
    channel = grpcutil.channel(f"127.0.0.1:{port}")
    try:
        yield health_pb2_grpc.HealthStub(channel), rules
    finally:
        await channel.close()
        await server.stop(None)


def write(path: Path, *rules: Rule) -> None:
    path.write_text(json.dumps(RuleTable(rules).as_json()))


async def check(stub: health_pb2_grpc.HealthStub, timeout: float = 10.0) -> grpc.StatusCode:
    try:
        await stub.Check(health_pb2.HealthCheckRequest(), timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_refuse_drop_and_heal_between_two_processes(
    stub: tuple[health_pb2_grpc.HealthStub, Path],
) -> None:
    health, rules = stub
    assert await check(health) is grpc.StatusCode.OK
    write(rules, Rule(CLIENT, SERVER, Action.REFUSE))
    assert await check(health) is grpc.StatusCode.UNAVAILABLE
    write(rules, Rule(SERVER, CLIENT, Action.DROP))  # the answer is lost on its way back
    assert await check(health, timeout=0.5) is grpc.StatusCode.DEADLINE_EXCEEDED
    write(rules, Rule("order-executor-1", SERVER, Action.REFUSE))  # another pair: no effect
    assert await check(health) is grpc.StatusCode.OK
    write(rules)
    assert await check(health) is grpc.StatusCode.OK


async def test_a_stream_is_filtered_per_message(
    stub: tuple[health_pb2_grpc.HealthStub, Path],
) -> None:
    health, rules = stub
    write(rules, Rule(SERVER, CLIENT, Action.REFUSE))
    call = health.Watch(health_pb2.HealthCheckRequest())
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in call:
            pass
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
