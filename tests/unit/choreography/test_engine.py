"""The engine's rules, driven directly (no sockets): messages in, outboxes out."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bookstore import vclock
from bookstore.ai.budget import AiBudget
from bookstore.choreography.engine import Participant, SessionLink
from bookstore.choreography.events import EventResult, Handler
from bookstore.pb import checkout_pb2, common_pb2

FD = "fraud-detection"


def init(order_id: str) -> checkout_pb2.OrchestratorMessage:
    order = checkout_pb2.OrderData(order_id=common_pb2.OrderId(value=order_id))
    return checkout_pb2.OrchestratorMessage(init=checkout_pb2.InitOrder(order=order))


def cancel(order_id: str) -> checkout_pb2.OrchestratorMessage:
    return checkout_pb2.OrchestratorMessage(
        cancel=checkout_pb2.CancelOrder(order_id=common_pb2.OrderId(value=order_id))
    )


def finalize(order_id: str, clock: vclock.Clock) -> checkout_pb2.OrchestratorMessage:
    return checkout_pb2.OrchestratorMessage(
        finalize=checkout_pb2.FinalizeOrder(
            order_id=common_pb2.OrderId(value=order_id), final_clock=vclock.to_pb(clock)
        )
    )


def update(
    order_id: str, event: str, clock: vclock.Clock, spent: float = 0.0
) -> checkout_pb2.ClockUpdate:
    return checkout_pb2.ClockUpdate(
        order_id=common_pb2.OrderId(value=order_id),
        event=event,
        sender="transaction-verification",
        clock=vclock.to_pb(clock),
        ai_spent_s=spent,
    )


class Gate:
    """Handlers for d and e that wait until released, recording what ran."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.ran: list[str] = []
        self.budgets: list[float] = []

    def handler(self, event: str) -> Handler:
        async def run(order: checkout_pb2.OrderData, budget: AiBudget) -> EventResult:
            self.budgets.append(budget.spent_s)
            await self.release.wait()
            self.ran.append(event)
            return EventResult(ok=True)

        return run


def fraud_detection(gate: Gate, ttl_s: float = 60.0) -> Participant:
    return Participant(
        FD,
        {"d": gate.handler("d"), "e": gate.handler("e")},
        ai_order_budget_s=3.0,
        unfinished_order_ttl_s=ttl_s,
    )


async def drain(link: SessionLink) -> list[checkout_pb2.ParticipantMessage]:
    link.outbox.close()
    return await link.outbox.take()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_events_wait_for_their_dependencies_and_updates_are_held_before_init() -> None:
    gate = Gate()
    fd = fraud_detection(gate)
    link = SessionLink("test")
    gate.release.set()
    fd.on_peer_update(update("o1", "b", (2, 0, 0), spent=0.5))  # before InitOrder: held
    assert fd.io["o1"].order is None and not fd.io["o1"].tasks
    fd.on_orchestrator_message(init("o1"), link)
    await settle()
    assert gate.ran == ["d"]  # e still waits for c
    assert gate.budgets == [0.5]  # the AI time spent elsewhere was absorbed
    fd.on_peer_update(update("o1", "c", (3, 0, 0)))
    await settle()
    assert gate.ran == ["d", "e"]
    assert fd.orders["o1"].clock == (3, 2, 0)
    reports = [m.event for m in await drain(link)]
    assert [(r.event, tuple(r.clock.entries)) for r in reports] == [
        ("d", (2, 1, 0)),
        ("e", (3, 2, 0)),
    ]


async def test_cancel_stops_running_work_and_nothing_runs_after_it() -> None:
    gate = Gate()
    fd = fraud_detection(gate)
    link = SessionLink("test")
    fd.on_orchestrator_message(init("o1"), link)
    fd.on_peer_update(update("o1", "b", (2, 0, 0)))
    await settle()
    assert len(fd.io["o1"].tasks) == 1  # d is running
    fd.on_orchestrator_message(cancel("o1"), link)
    gate.release.set()
    fd.on_peer_update(update("o1", "c", (3, 0, 0)))
    await settle()
    assert gate.ran == []
    assert fd.events_run == 0
    messages = await drain(link)
    assert [m.WhichOneof("kind") for m in messages] == ["cancelled"]
    # The ack waited for d to stop: c's clock, merged meanwhile, is in it; d never ticked.
    assert tuple(messages[0].cancelled.clock.entries) == (3, 0, 0)


async def test_an_event_that_finishes_despite_the_cancel_is_reported_before_the_ack() -> None:
    finish = asyncio.Event()

    async def stubborn(order: checkout_pb2.OrderData, budget: AiBudget) -> EventResult:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await finish.wait()  # finishes its work anyway
        return EventResult(ok=True)

    fd = Participant(FD, {"d": stubborn, "e": Gate().handler("e")})
    link = SessionLink("test")
    fd.on_orchestrator_message(init("o1"), link)
    fd.on_peer_update(update("o1", "b", (2, 0, 0)))
    await settle()
    fd.on_orchestrator_message(cancel("o1"), link)
    await settle()
    assert fd.orders["o1"].running == {"d"} and fd.orders["o1"].acks_owed == 1  # it waits
    finish.set()
    await settle()
    messages = await drain(link)
    assert [m.WhichOneof("kind") for m in messages] == ["event", "cancelled"]
    assert messages[0].event.event == "d" and fd.events_run == 1
    assert tuple(messages[1].cancelled.clock.entries) == (2, 1, 0)  # d's tick is in it
    second = SessionLink("test")
    fd.on_orchestrator_message(finalize("o1", (2, 1, 0)), second)
    assert (await drain(second))[0].finalized.consistent
    assert fd.orders == {} and fd.io == {} and fd.clock_errors == 0


async def test_a_cancel_in_the_batch_of_its_init_is_acknowledged() -> None:
    fd = fraud_detection(Gate())
    link = SessionLink("test")
    fd.on_peer_update(update("o1", "b", (2, 0, 0)))
    fd.on_orchestrator_message(init("o1"), link)  # d's task is created, not yet begun
    fd.on_orchestrator_message(cancel("o1"), link)
    await settle()
    messages = await drain(link)
    assert [m.WhichOneof("kind") for m in messages] == ["cancelled"]
    assert tuple(messages[0].cancelled.clock.entries) == (2, 0, 0)


async def test_finalize_forgets_a_consistent_order_and_tolerates_late_messages(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="bookstore.choreography")
    fd = fraud_detection(Gate())
    link = SessionLink("test")
    fd.on_orchestrator_message(init("o1"), link)
    fd.on_peer_update(update("o1", "a", (1, 0, 0)))
    fd.on_orchestrator_message(finalize("o1", (3, 0, 0)), link)
    assert "o1" not in fd.orders
    assert fd.orders_finalized == 1
    ack = (await drain(link))[0].finalized
    assert ack.consistent and tuple(ack.clock.entries) == (1, 0, 0)
    fd.on_peer_update(update("o1", "c", (3, 0, 0)))  # late, but within the final clock
    assert "o1" not in fd.orders
    assert fd.clock_errors == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    fd.on_peer_update(update("o1", "c", (4, 0, 0)))  # late and beyond it: an error
    assert fd.clock_errors == 1
    assert [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "o1" not in fd.orders


async def test_inconsistent_finalize_is_an_error_and_the_order_is_kept_until_swept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fd = fraud_detection(Gate(), ttl_s=10.0)
    link = SessionLink("test")
    fd.on_orchestrator_message(init("o1"), link)
    fd.on_peer_update(update("o1", "c", (3, 0, 0)))
    fd.on_orchestrator_message(finalize("o1", (2, 0, 0)), link)
    ack = (await drain(link))[0].finalized
    assert not ack.consistent and "not <=" in ack.error
    assert fd.orders["o1"].flagged and fd.clock_errors == 1
    assert fd.sweep(fd.orders["o1"].created + 5) == 0
    assert fd.sweep(fd.orders["o1"].created + 11) == 1
    assert fd.orders == {}
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("inconsistent" in e for e in errors)
    assert any("dropped" in e and "flagged" in e for e in errors)


async def test_orders_never_finalized_are_swept_with_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fd = fraud_detection(Gate(), ttl_s=0.1)
    fd.on_peer_update(update("orphan", "b", (2, 0, 0)))  # never initialised
    fd.connect_peers({"transaction-verification": "127.0.0.1:9", "suggestions": "127.0.0.1:9"})
    try:
        for _ in range(100):
            if not fd.orders:
                break
            await asyncio.sleep(0.02)
    finally:
        await fd.close()
    assert fd.orders == {}
    assert any("orphan" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


def test_a_service_must_handle_exactly_its_events() -> None:
    with pytest.raises(ValueError):
        Participant(FD, {"d": Gate().handler("d")})
