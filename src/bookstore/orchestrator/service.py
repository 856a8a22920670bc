"""The orchestrator process: the HTTP API on uvicorn, stopped gracefully on SIGTERM/SIGINT.

Not `grpcutil.serve`: this is an HTTP server, whose graceful stop is uvicorn's
(`should_exit`, then `force_exit` on a second signal); it stops on the same signals.

With the gate on (`ORCHESTRATOR_GATE`, the default) this process binds the public
port, serves the app on a Unix socket in a private directory, and hands the port to
the gate (`orchestrator/gate.py`), a process of its own that refuses checkouts
beyond the admission limit at once and forwards everything else. The gate dies with
this process; if the gate ends first, this process stops with an error, so that
whatever supervises it starts both again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import tempfile
from asyncio.subprocess import Process
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from bookstore.cards import warn_if_development_key
from bookstore.grpcutil import STOP_SIGNALS
from bookstore.orchestrator.app import create_app
from bookstore.orchestrator.edge import CORS_HEADERS
from bookstore.orchestrator.errors import busy_answer
from bookstore.orchestrator.gate import APP_KEEP_ALIVE_S, STOP_GRACE_S
from bookstore.orchestrator.gate import start as start_gate
from bookstore.orchestrator.gate_state import GateState
from bookstore.settings import Settings, split_address

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn's server without its own signal capture: `serve` installs the handlers
    on the running loop, so a SIGTERM ends in a clean return (exit code 0)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def config(
    settings: Settings, gate: GateState | None = None, uds: str | None = None
) -> uvicorn.Config:
    host, port = split_address(settings.bind_address("orchestrator"), "ORCHESTRATOR_ADDRESS")
    return uvicorn.Config(
        create_app(settings, gate=gate),
        host=host,
        port=port,
        uds=uds,
        http="httptools",  # a declared dependency
        loop="none",  # the process's running loop
        lifespan="on",
        access_log=False,
        log_config=None,  # logs.setup already configured the root logger
        server_header=False,
        timeout_graceful_shutdown=5,
        backlog=2048,
        # behind the gate, which closes idle connections first (no race with a request)
        timeout_keep_alive=APP_KEEP_ALIVE_S if uds else 5,
    )


def refusal_bytes() -> bytes:
    """The app's 503 BUSY as bytes on the wire, for the gate to send as it is."""
    status, headers, body = busy_answer()
    lines = [f"HTTP/1.1 {status} Service Unavailable".encode()]
    for name, value in [*headers, *CORS_HEADERS, (b"content-length", str(len(body)).encode())]:
        lines.append(name + b": " + value)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def serve(settings: Settings, replica_id: int | None = None) -> None:
    # uvicorn's start/stop chatter (logged as "uvicorn.error") says nothing ours does not
    chatter = logging.getLogger("uvicorn.error")
    chatter.setLevel(max(logging.WARNING, logging.getLogger().getEffectiveLevel()))
    warn_if_development_key()
    if settings.gate:
        await _serve_with_gate(settings)
        return
    server = _Server(config(settings))
    with _stopped_by_signals(server):
        log.info("orchestrator listening on http://%s", settings.bind_address("orchestrator"))
        await server.serve()
    if not server.started:
        raise SystemExit(1)
    log.info("orchestrator stopped")


@contextlib.contextmanager
def _stopped_by_signals(
    server: uvicorn.Server, also: list[Process] | None = None
) -> Iterator[None]:
    loop = asyncio.get_running_loop()

    def stop() -> None:
        if server.should_exit:
            server.force_exit = True
        server.should_exit = True
        for process in also or ():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop)
    try:
        yield
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)


_PRIVATE_PREFIX = "bookstore-orchestrator-"


def _remove_stale_private_dirs() -> None:
    """The private directories of orchestrators gone without cleaning up (SIGKILL):
    named after their pid, removed once that process is gone."""
    for stale in Path(tempfile.gettempdir()).glob(f"{_PRIVATE_PREFIX}*-*"):
        pid = stale.name[len(_PRIVATE_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit() or stale.stat().st_uid != os.getuid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(stale, ignore_errors=True)
        except PermissionError:
            pass


async def _serve_with_gate(settings: Settings) -> None:
    address = settings.bind_address("orchestrator")
    host, port = split_address(address, "ORCHESTRATOR_ADDRESS")
    try:
        listening = socket.create_server((host, port), backlog=2048)
    except OSError as exc:
        log.error("orchestrator cannot listen on %s: %s", address, exc)
        raise SystemExit(1) from None
    _remove_stale_private_dirs()
    private = Path(tempfile.mkdtemp(prefix=f"{_PRIVATE_PREFIX}{os.getpid()}-"))
    try:
        uds = str(private / "app.sock")
        state = GateState.create(private / "gate.state", refusal_bytes(), settings.max_in_flight)
        server = _Server(config(settings, gate=state, uds=uds))
        gates: list[Process] = []  # the signal handlers stop the gate too, once it runs
        with _stopped_by_signals(server, also=gates):
            app = asyncio.create_task(server.serve(), name="uvicorn")
            while not server.started and not app.done():  # noqa: ASYNC110 (uvicorn has no event)
                await asyncio.sleep(0.01)
            if app.done() or server.should_exit:
                listening.close()
                await app
                if not server.started:
                    raise SystemExit(1)
                return
            gate = await start_gate(listening, uds, state)
            gates.append(gate)
            listening.close()  # the gate's now
            log.info("orchestrator listening on http://%s (gate pid %d)", address, gate.pid)
            gate_ended = False

            async def watch() -> None:
                nonlocal gate_ended
                await gate.wait()
                if not server.should_exit:
                    gate_ended = True
                    log.error("the gate ended (exit code %s): stopping", gate.returncode)
                    server.should_exit = True

            watcher = asyncio.create_task(watch(), name="gate-watch")
            await app
        with contextlib.suppress(ProcessLookupError):
            gate.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(gate.wait(), STOP_GRACE_S + 1)
        except TimeoutError:
            gate.kill()
            await gate.wait()
        await watcher
        state.close()
        if gate_ended:
            raise SystemExit(1)
    finally:
        shutil.rmtree(private, ignore_errors=True)
    log.info("orchestrator stopped")
