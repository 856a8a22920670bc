"""grpcutil.serve: the one run loop of every gRPC service, on a real server in-process."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from bookstore import grpcutil, health


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_serve_reports_serving_until_a_signal_then_stops(sig: signal.Signals) -> None:
    server, servicer, port = grpcutil.create_server("127.0.0.1:0", lambda _: None, ["x.Y"])
    address = f"127.0.0.1:{port}"
    started: list[str] = []

    def start() -> None:
        started.append(health.local(address)[0])

    serving = asyncio.create_task(
        grpcutil.serve(server, servicer, ["x.Y"], label="test", grace_s=0.1, start=start)
    )
    while not await health.grpc_serving(address):
        assert not serving.done(), serving
        await asyncio.sleep(0.01)
    assert started == ["127.0.0.1"]
    os.kill(os.getpid(), sig)
    await serving
    assert "UNAVAILABLE" in (await health.grpc_problem(address) or "")
    # the handlers are gone again: the default disposition is back
    assert signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler)
