"""gRPC plumbing shared by every service: servers with health and reflection,
the one `serve` loop (signals, graceful stop), channels with bounded messages,
and the one place gRPC errors are translated.

Every server comes from `create_server` and every client channel from
`channel`: both follow the process's `Transport`, plaintext until the process
takes an identity (`bookstore serve` does, see `bookstore.identity.credentials`),
mutual TLS with its own certificate and the authorization policy after.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from bookstore.chaos import filter as chaos_filter
from bookstore.telemetry import tracing
from bookstore.telemetry.grpc_metrics import MetricsInterceptor

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
CHANNEL_OPTIONS: list[tuple[str, int | str]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    # Reconnect fast after a peer restarts (defaults back off up to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1_000),
    ("grpc.min_reconnect_backoff_ms", 100),
]
SERVER_OPTIONS: list[tuple[str, int | str]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.so_reuseport", 0),
]


async def reconnects(channel: grpc.aio.Channel) -> bool:
    """After a channel's connection closed: whether it connects again (False: the
    connection was refused, the peer is gone). Bound it with a timeout."""
    state = channel.get_state(try_to_connect=True)
    ends = (grpc.ChannelConnectivity.READY, grpc.ChannelConnectivity.TRANSIENT_FAILURE)
    while state not in ends:
        if state in (None, grpc.ChannelConnectivity.SHUTDOWN):
            return False  # closed here: the caller is stopping
        state = await channel.wait_for_state_change(state)
    ready: bool = state == grpc.ChannelConnectivity.READY
    return ready


class ServiceUnavailable(Exception):
    """A peer service could not be reached or did not answer in time."""

    def __init__(self, service: str, detail: str) -> None:
        super().__init__(f"{service} is unavailable: {detail}")
        self.service = service
        self.detail = detail


class Rejected(Exception):
    """A peer refused the request; `code` is its named result code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def translate(service: str, error: grpc.RpcError) -> ServiceUnavailable | Rejected:
    """Map a gRPC error to our own error types (the one place this happens)."""
    code = error.code() if isinstance(error, grpc.aio.AioRpcError | grpc.Call) else None
    details = (error.details() if isinstance(error, grpc.aio.AioRpcError | grpc.Call) else "") or ""
    if code in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        None,
    ):
        if details.startswith("DISK_FULL:"):  # the service is up, its disk is not
            return ServiceUnavailable(service, details)
        return ServiceUnavailable(service, code.name.lower() if code else "unknown error")
    named, sep, rest = details.partition(": ")
    if sep and named.isupper():
        return Rejected(named, rest)
    return Rejected(code.name, details)


_STATUS_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def call_error(code: int, details: str) -> grpc.aio.AioRpcError:
    """The error a call that ended with status `code` (its number) and `details` raises:
    how a batch call's client hands one operation's refusal to that operation's caller,
    exactly as the operation's own call would have raised it."""
    status = _STATUS_BY_NUMBER.get(code, grpc.StatusCode.UNKNOWN)
    metadata = grpc.aio.Metadata()
    return grpc.aio.AioRpcError(status, metadata, metadata, details)


def describe(exc: BaseException) -> str:
    """A one-line description of a gRPC error."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name} {exc.details() or ''}".strip()
    return type(exc).__name__


@dataclass(frozen=True)
class Transport:
    """How a process's gRPC connections are made: plaintext (no credentials),
    or mutual TLS with its own certificate (both credentials) and the server
    interceptors that check who calls what."""

    channel_credentials: grpc.ChannelCredentials | None = None
    server_credentials: grpc.ServerCredentials | None = None
    interceptors: Sequence[grpc.aio.ServerInterceptor] = ()

    @property
    def tls(self) -> bool:
        return self.channel_credentials is not None

    def channel(self, address: str) -> grpc.aio.Channel:
        if self.channel_credentials is None:
            return grpc.aio.insecure_channel(
                address, options=CHANNEL_OPTIONS, interceptors=chaos_filter.client_interceptors()
            )
        return grpc.aio.secure_channel(
            address,
            self.channel_credentials,
            options=CHANNEL_OPTIONS,
            interceptors=chaos_filter.client_interceptors(),
        )

    def blocking_channel(self, address: str) -> grpc.Channel:
        """A channel for code without an event loop (the container health check)."""
        if self.channel_credentials is None:
            return grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        return grpc.secure_channel(address, self.channel_credentials, options=CHANNEL_OPTIONS)

    def add_port(self, server: grpc.aio.Server, bind: str) -> int:
        """Bind `server`; with TLS only a secure port, so plaintext is refused."""
        if self.server_credentials is None:
            return int(server.add_insecure_port(bind))
        return int(server.add_secure_port(bind, self.server_credentials))


PLAINTEXT = Transport()
_transport = PLAINTEXT


def use_transport(transport: Transport) -> None:
    """Make `transport` the process's for every later `channel` and `create_server`."""
    global _transport
    _transport = transport


def current_transport() -> Transport:
    return _transport


def channel(address: str) -> grpc.aio.Channel:
    """A client channel to `address` with the process's transport (see `Transport`)."""
    return _transport.channel(address)


def create_server(
    bind: str,
    register: Callable[[grpc.aio.Server], None],
    service_names: Iterable[str],
) -> tuple[grpc.aio.Server, health.aio.HealthServicer, int]:
    """A grpc.aio server with `register`ed servicers, health and reflection.

    Returns the server, its health servicer (status NOT_SERVING until the
    caller marks it ready with `set_serving`) and the bound port (bind
    "host:0" in tests to get a free one). The process's transport decides
    whether the port is plaintext or mutual TLS with the policy's check.
    """
    transport = _transport
    # The caller's identity checked first, then chaos's message faults (only with chaos
    # on), then (tracing on) a batch call's span linked to its callers, then every unary
    # call counted and timed. The tracing instrumentation, when on, puts its own
    # interceptor before all of them.
    server = grpc.aio.server(
        options=SERVER_OPTIONS,
        interceptors=[
            *transport.interceptors,
            *chaos_filter.server_interceptors(),
            *tracing.server_interceptors(),
            MetricsInterceptor(),
        ],
    )
    register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = list(service_names)
    reflection.enable_server_reflection(
        [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    port = transport.add_port(server, bind)
    if port == 0:
        raise OSError(f"could not bind {bind}")
    return server, health_servicer, port


async def set_serving(health_servicer: health.aio.HealthServicer, names: Iterable[str]) -> None:
    for name in ["", *names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)


async def until_signalled() -> None:
    """Return on the first SIGTERM or SIGINT (the handlers are removed again)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)


async def serve(
    server: grpc.aio.Server,
    health_servicer: health.aio.HealthServicer,
    names: Iterable[str],
    *,
    label: str,
    grace_s: float,
    start: Callable[[], object] | None = None,
) -> None:
    """Run a service made by `create_server` until SIGTERM or SIGINT, then stop gracefully.

    Starts the server, calls `start` (links to peers, timers: what must run before
    the service is ready), reports SERVING, waits for a signal, reports NOT_SERVING
    and stops the server, letting calls in flight finish within `grace_s`. The
    caller closes what `start` opened once this returns.
    """
    names = list(names)
    await server.start()
    if start is not None:
        start()
    await set_serving(health_servicer, names)
    log.info("%s serving", label)
    try:
        await until_signalled()
    finally:
        log.info("%s stopping", label)
        await health_servicer.enter_graceful_shutdown()
        await server.stop(grace_s)
