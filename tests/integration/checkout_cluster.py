"""Helpers: the three checkout services in-process on 127.0.0.1:0, driven by the real Pipeline."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from checkout_requests import course_page_request

from bookstore import grpcutil
from bookstore.choreography import server as choreography_server
from bookstore.choreography.engine import Participant
from bookstore.fraud_detection import service as fd_service
from bookstore.orchestrator.models import CheckoutRequest
from bookstore.orchestrator.pipeline import Pipeline
from bookstore.settings import CHECKOUT_SERVICES, Settings
from bookstore.suggestions import service as sug_service
from bookstore.transaction_verification import service as tv_service

FACTORIES: dict[str, Callable[[Settings], Participant]] = {
    "transaction-verification": tv_service.create_participant,
    "fraud-detection": fd_service.create_participant,
    "suggestions": sug_service.create_participant,
}


@dataclass
class Cluster:
    settings: Settings
    participants: dict[str, Participant]
    servers: dict[str, grpc.aio.Server]
    pipeline: Pipeline

    async def stop(self, service: str) -> None:
        await self.servers[service].stop(0)
        await self.participants[service].close()

    async def wait_empty(
        self, timeout: float = 3.0, services: tuple[str, ...] = CHECKOUT_SERVICES
    ) -> dict[str, int]:
        """Cached orders per service once all are 0, or as they stand at the deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            counts = {s: len(self.participants[s].orders) for s in services}
            if not any(counts.values()) or loop.time() > deadline:
                return counts
            await asyncio.sleep(0.02)


def course_request(**overrides: object) -> CheckoutRequest:
    """The course page's default order, with an expiry in the future."""
    return CheckoutRequest.model_validate(course_page_request(**overrides))


async def start_cluster(
    ttl_s: float = 60.0,
    checkout_timeout_s: float = 5.0,
    factories: dict[str, Callable[[Settings], Participant]] | None = None,
) -> Cluster:
    base = Settings(unfinished_order_ttl_s=ttl_s, checkout_timeout_s=checkout_timeout_s)
    chosen = {**FACTORIES, **(factories or {})}
    participants: dict[str, Participant] = {}
    servers: dict[str, grpc.aio.Server] = {}
    addresses: dict[str, str] = {}
    for service in CHECKOUT_SERVICES:
        participant = chosen[service](base)
        server, health, port = choreography_server.create_server("127.0.0.1:0", participant)
        await server.start()
        await grpcutil.set_serving(health, [choreography_server.SERVICE_NAME])
        participants[service], servers[service] = participant, server
        addresses[service] = f"127.0.0.1:{port}"
    settings = dataclasses.replace(
        base,
        transaction_verification_address=addresses["transaction-verification"],
        fraud_detection_address=addresses["fraud-detection"],
        suggestions_address=addresses["suggestions"],
    )
    for service, participant in participants.items():
        participant.connect_peers(choreography_server.peer_addresses(settings, service))
    pipeline = Pipeline(settings)
    await pipeline.start()
    return Cluster(settings, participants, servers, pipeline)


async def stop_cluster(cluster: Cluster) -> None:
    await cluster.pipeline.close()
    for service in CHECKOUT_SERVICES:
        await cluster.servers[service].stop(0)
        await cluster.participants[service].close()
