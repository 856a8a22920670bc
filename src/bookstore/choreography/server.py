"""Server plumbing shared by the three checkout services.

`participant` builds a service's servicer from its event handlers.
`create_server` binds (tests bind "127.0.0.1:0") and returns the port before
any peer is known; `Participant.connect_peers` opens the peer streams once
their addresses are known. `serve` runs one service until SIGTERM/SIGINT.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import grpc
from grpc_health.v1 import health

from bookstore import grpcutil
from bookstore.choreography.engine import Participant
from bookstore.choreography.events import Handler
from bookstore.pb import checkout_pb2, checkout_pb2_grpc
from bookstore.settings import CHECKOUT_SERVICES, Settings

log = logging.getLogger(__name__)

SERVICE_NAME = checkout_pb2.DESCRIPTOR.services_by_name["CheckoutParticipant"].full_name
STOP_GRACE_S = 1.0


def create_server(
    bind: str, participant: Participant
) -> tuple[grpc.aio.Server, health.aio.HealthServicer, int]:
    """A bound (not yet started) server for `participant`, its health servicer and port."""

    def register(server: grpc.aio.Server) -> None:
        checkout_pb2_grpc.add_CheckoutParticipantServicer_to_server(participant, server)

    return grpcutil.create_server(bind, register, [SERVICE_NAME])


def participant(settings: Settings, service: str, handlers: Mapping[str, Handler]) -> Participant:
    """The `Participant` for `service` running `handlers`, configured from `settings`."""
    return Participant(
        service,
        handlers,
        ai_order_budget_s=settings.ai_order_budget_s,
        unfinished_order_ttl_s=settings.unfinished_order_ttl_s,
    )


def peer_addresses(settings: Settings, service: str) -> dict[str, str]:
    return {p: settings.checkout_address(p) for p in CHECKOUT_SERVICES if p != service}


async def serve(settings: Settings, participant: Participant) -> None:
    """Bind, link to the peers, report SERVING, and run until SIGTERM or SIGINT."""
    server, health_servicer, port = create_server(
        settings.bind_address(participant.service), participant
    )
    try:
        await grpcutil.serve(
            server,
            health_servicer,
            [SERVICE_NAME],
            label=f"{participant.service} on {settings.bind_host}:{port}",
            grace_s=STOP_GRACE_S,
            start=lambda: participant.connect_peers(peer_addresses(settings, participant.service)),
        )
    finally:
        await participant.close()
