"""Pipeline, the adapter around the checkout state machine, over fake links (no sockets)."""

from __future__ import annotations

import asyncio

import pytest

from bookstore.grpcutil import ServiceUnavailable
from bookstore.orchestrator.models import CheckoutRequest
from bookstore.orchestrator.pipeline import CheckoutTimeout, Pipeline
from bookstore.orchestrator.sessions import LinkEvents
from bookstore.pb import checkout_pb2, common_pb2
from bookstore.settings import Settings

TV, FD, SUG = "transaction-verification", "fraud-detection", "suggestions"
SERVICE = {"a": TV, "b": TV, "c": TV, "d": FD, "e": FD, "f": SUG}
REQUEST = CheckoutRequest.model_validate({"items": [{"name": "Book A", "quantity": 1}]})


class FakeLink:
    """Up from the start; keeps what was sent; the test speaks for the service."""

    def __init__(self, service: str, events: LinkEvents) -> None:
        self.service = service
        self.events = events
        self.up = True
        self.became_up = asyncio.Event()
        self.became_up.set()
        self.sent: list[checkout_pb2.OrchestratorMessage] = []
        self.sent_more = asyncio.Event()

    def start(self) -> None:
        pass

    def send(self, message: checkout_pb2.OrchestratorMessage) -> None:
        self.sent.append(message)
        self.sent_more.set()

    async def until_sent(self, kind: str) -> None:
        while kind not in self.kinds():
            self.sent_more.clear()
            await self.sent_more.wait()

    async def close(self) -> None:
        pass

    async def stats(self, timeout: float) -> tuple[int, int] | None:
        return (7, 0) if self.up else None

    def kinds(self) -> list[str | None]:
        return [m.WhichOneof("kind") for m in self.sent]

    def reply(self, message: checkout_pb2.ParticipantMessage) -> None:
        self.events.on_message(self.service, message)


class Cluster:
    def __init__(self) -> None:
        self.links: dict[str, FakeLink] = {}

    def factory(self, service: str, address: str, events: LinkEvents, timeout: float) -> FakeLink:
        link = FakeLink(service, events)
        self.links[service] = link
        return link

    def report(self, order_id: str, event: str, ok: bool = True) -> None:
        report = checkout_pb2.EventReport(
            order_id=common_pb2.OrderId(value=order_id),
            event=event,
            ok=ok,
            reason="" if ok else f"event {event} says no",
            clock=common_pb2.VectorClock(entries=[1, 0, 0]),
        )
        if event == "f":
            report.suggestions.add(book_id="b2", title="Dune", author="Frank Herbert")
        self.links[SERVICE[event]].reply(checkout_pb2.ParticipantMessage(event=report))

    def ack(self, order_id: str, kind: str) -> None:
        oid = common_pb2.OrderId(value=order_id)
        for link in self.links.values():
            if kind == "cancelled":
                clock = common_pb2.VectorClock(entries=[1, 0, 0])
                ack = checkout_pb2.CancelAck(order_id=oid, clock=clock)
                link.reply(checkout_pb2.ParticipantMessage(cancelled=ack))
            else:
                done = checkout_pb2.FinalizeAck(order_id=oid, consistent=True)
                link.reply(checkout_pb2.ParticipantMessage(finalized=done))


@pytest.fixture
async def cluster() -> Cluster:
    return Cluster()


@pytest.fixture
async def pipeline(cluster: Cluster) -> Pipeline:
    settings = Settings(checkout_timeout_s=0.3, rpc_timeout_s=0.2)
    started = Pipeline(settings, links=cluster.factory)
    await started.start()
    return started


async def _approved(pipeline: Pipeline, cluster: Cluster) -> str:
    """Run one order to approval (its Finalize sent, not yet acknowledged); its id."""
    run = asyncio.create_task(pipeline.run("o1", REQUEST))
    order_id = await _order_id(cluster)
    for event in "abcdef":
        cluster.report(order_id, event)
    assert (await run).approved
    return order_id


async def _order_id(cluster: Cluster) -> str:
    await cluster.links[TV].until_sent("init")
    return cluster.links[TV].sent[0].init.order.order_id.value


async def test_six_reports_approve_finalize_and_forget_the_order(
    pipeline: Pipeline, cluster: Cluster
) -> None:
    run = asyncio.create_task(pipeline.run("o1", REQUEST))
    order_id = await _order_id(cluster)
    for event in "abcdef":
        cluster.report(order_id, event)
    outcome = await run
    assert outcome.approved and [s.title for s in outcome.suggestions] == ["Dune"]
    assert cluster.links[SUG].kinds() == ["init", "finalize"]
    assert pipeline.in_flight == 1
    cluster.ack(order_id, "finalized")
    assert pipeline.in_flight == 0


async def test_a_failure_cancels_then_finalizes_and_answers_rejected(
    pipeline: Pipeline, cluster: Cluster
) -> None:
    run = asyncio.create_task(pipeline.run("o1", REQUEST))
    order_id = await _order_id(cluster)
    cluster.report(order_id, "c", ok=False)
    assert cluster.links[FD].kinds() == ["init", "cancel"]
    cluster.ack(order_id, "cancelled")
    outcome = await run
    assert not outcome.approved and outcome.reason == "event c says no"
    assert cluster.links[FD].kinds() == ["init", "cancel", "finalize"]


async def test_a_link_going_down_answers_that_service_unavailable(
    pipeline: Pipeline, cluster: Cluster
) -> None:
    run = asyncio.create_task(pipeline.run("o1", REQUEST))
    order_id = await _order_id(cluster)
    cluster.links[FD].up = False
    cluster.links[FD].events.on_down(FD)
    cluster.ack(order_id, "cancelled")
    with pytest.raises(ServiceUnavailable) as raised:
        await run
    assert raised.value.service == FD
    assert cluster.links[FD].kinds() == ["init"]


async def test_a_caller_giving_up_during_the_cancel_still_finalizes(
    pipeline: Pipeline, cluster: Cluster
) -> None:
    run = asyncio.create_task(pipeline.run("o1", REQUEST))
    await _order_id(cluster)
    await cluster.links[TV].until_sent("cancel")  # the checkout timeout passed
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert cluster.links[TV].kinds() == ["init", "cancel", "finalize"]
    assert pipeline.in_flight == 1
    # No FinalizeAck comes: the order is forgotten at the end of the ack wait, a timer
    # due before this sleep ends (the loop runs timers in the order they are due).
    await asyncio.sleep(pipeline.settings.rpc_timeout_s + 0.05)
    assert pipeline.in_flight == 0


async def test_no_outcome_in_time_is_a_checkout_timeout(
    pipeline: Pipeline, cluster: Cluster
) -> None:
    run = asyncio.create_task(pipeline.run("o1", REQUEST))
    order_id = await _order_id(cluster)
    cluster.report(order_id, "a")
    with pytest.raises(CheckoutTimeout):
        await run
    assert cluster.links[SUG].kinds() == ["init", "cancel", "finalize"]


async def test_stats_say_which_service_answers(pipeline: Pipeline, cluster: Cluster) -> None:
    cluster.links[SUG].up = False
    stats = {s.service: (s.healthy, s.pid) for s in await pipeline.stats()}
    assert stats == {TV: (True, 7), FD: (True, 7), SUG: (False, None)}


async def test_closing_waits_for_the_final_clocks_already_sent(
    pipeline: Pipeline, cluster: Cluster
) -> None:
    """The caller has its answer once Finalize is queued; closing the streams at that
    moment would drop it and leave the order in the services until their TTL."""
    order_id = await _approved(pipeline, cluster)
    closing = asyncio.create_task(pipeline.close())
    await asyncio.sleep(0.05)
    assert not closing.done()  # still waiting for the FinalizeAcks
    cluster.ack(order_id, "finalized")
    await asyncio.wait_for(closing, 1.0)
    assert pipeline.in_flight == 0


async def test_closing_gives_up_on_final_clocks_after_the_ack_timeout(
    pipeline: Pipeline, cluster: Cluster
) -> None:
    await _approved(pipeline, cluster)
    await asyncio.wait_for(pipeline.close(), 1.0)  # no ack: bounded by rpc_timeout_s (0.2)
