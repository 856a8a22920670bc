"""The orchestrator process: the HTTP API on uvicorn, stopped gracefully on SIGTERM/SIGINT.

Not `grpcutil.serve`: this is an HTTP server, whose graceful stop is uvicorn's
(`should_exit`, then `force_exit` on a second signal); it stops on the same signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import uvicorn

from bookstore.cards import warn_if_development_key
from bookstore.grpcutil import STOP_SIGNALS
from bookstore.orchestrator.app import create_app
from bookstore.settings import Settings, split_address

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn's server without its own signal capture: `serve` installs the handlers
    on the running loop, so a SIGTERM ends in a clean return (exit code 0)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def config(settings: Settings) -> uvicorn.Config:
    host, port = split_address(settings.bind_address("orchestrator"), "ORCHESTRATOR_ADDRESS")
    return uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        http="httptools",  # from uvicorn[standard]
        loop="none",  # the process's running loop
        lifespan="on",
        access_log=False,
        log_config=None,  # logs.setup already configured the root logger
        server_header=False,
        timeout_graceful_shutdown=5,
        backlog=2048,
        # An idle keep-alive connection is closed after this long. A client that sends on
        # it as it closes gets a reset, not an answer: a busy client (a page, a script
        # with hundreds of connections) must not meet that, so wait as nginx does.
        timeout_keep_alive=75,
    )


async def serve(settings: Settings, replica_id: int | None = None) -> None:
    # uvicorn's start/stop chatter (logged as "uvicorn.error") says nothing ours does not
    chatter = logging.getLogger("uvicorn.error")
    chatter.setLevel(max(logging.WARNING, logging.getLogger().getEffectiveLevel()))
    warn_if_development_key()
    server = _Server(config(settings))
    with _stopped_by_signals(server):
        log.info("orchestrator listening on http://%s", settings.bind_address("orchestrator"))
        await server.serve()
    if not server.started:
        raise SystemExit(1)
    log.info("orchestrator stopped")


@contextlib.contextmanager
def _stopped_by_signals(server: uvicorn.Server) -> Iterator[None]:
    loop = asyncio.get_running_loop()

    def stop() -> None:
        if server.should_exit:
            server.force_exit = True
        server.should_exit = True

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop)
    try:
        yield
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
