"""The three real servicers over real gRPC on 127.0.0.1, driven by the real Pipeline."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import uuid

import pytest
from checkout_cluster import Cluster, course_request, start_cluster, stop_cluster

from bookstore import vclock
from bookstore.ai.budget import AiBudget
from bookstore.choreography.engine import Participant
from bookstore.choreography.links import PeerLink
from bookstore.fraud_detection import service as fd_service
from bookstore.fraud_detection.rules import RulesJudge, Verdict
from bookstore.grpcutil import ServiceUnavailable
from bookstore.orchestrator.pipeline import CheckoutTimeout, Outcome, Pipeline
from bookstore.pb import checkout_pb2, common_pb2
from bookstore.settings import Settings

EDGES = [("a", "c"), ("b", "d"), ("c", "e"), ("d", "e"), ("e", "f")]
EVENT_LINE = re.compile(
    r"^order=(\S+) event=([a-f]) \(([a-z-]+)\) clock=\[(\d+),(\d+),(\d+)\] "
    r"ok=(True|False) answered_by=(\S.*)$"
)

REJECTIONS: list[tuple[dict[str, object], str]] = [
    ({"items": []}, "The order has no items."),
    ({"items": [{"name": "The Necronomicon", "quantity": 1}]}, "Necronomicon"),
    ({"items": [{"name": "Book A", "quantity": -1}]}, "at least 1"),
    ({"user": {"name": "", "contact": "x@example.com"}}, "your name"),
    ({"billingAddress": {"street": "1 Main St", "country": "USA"}}, "billing city"),
    ({"termsAccepted": False}, "terms and conditions"),
    (
        {"creditCard": {"number": "4111111111111112", "expirationDate": "12/99", "cvv": "123"}},
        "The card number is not valid.",
    ),
    (
        {"creditCard": {"number": "4111111111111111", "expirationDate": "12/25", "cvv": "123"}},
        "The card expired in 12/25.",
    ),
    (
        {"creditCard": {"number": "4111111111111111", "expirationDate": "12/99", "cvv": "12"}},
        "3 digits",
    ),
    ({"user": {"name": "John", "contact": "john@mailinator.com"}}, "throw-away"),
    (
        {"creditCard": {"number": "4000000000000002", "expirationDate": "12/99", "cvv": "123"}},
        "This card was declined.",
    ),
]


def clocks_by_event(outcome: Outcome) -> dict[str, vclock.Clock]:
    return {e.event: e.clock for e in outcome.events}


def assert_partial_order(clocks: dict[str, vclock.Clock]) -> None:
    for before, after in EDGES:
        if before in clocks and after in clocks:
            assert vclock.happened_before(clocks[before], clocks[after]), (before, after, clocks)


def logged_events(caplog: pytest.LogCaptureFixture) -> dict[str, dict[str, vclock.Clock]]:
    found: dict[str, dict[str, vclock.Clock]] = {}
    for record in caplog.records:
        m = EVENT_LINE.match(record.getMessage())
        if m:
            clock = (int(m.group(4)), int(m.group(5)), int(m.group(6)))
            found.setdefault(m.group(1), {})[m.group(2)] = clock
    return found


class BlockingJudge:
    """Rules for e; event d blocks until cancelled (records what happened)."""

    def __init__(self) -> None:
        self.rules = RulesJudge()
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def check_user(self, order: checkout_pb2.OrderData, budget: AiBudget) -> Verdict:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        raise AssertionError("unreachable")

    async def check_card(self, order: checkout_pb2.OrderData, budget: AiBudget) -> Verdict:
        return self.rules.card_verdict(order)


async def blocking_cluster(judge: BlockingJudge, **kwargs: float) -> Cluster:
    def make_fd(settings: Settings) -> Participant:
        return fd_service.create_participant(settings, judge)

    return await start_cluster(factories={"fraud-detection": make_fd}, **kwargs)


async def test_course_default_order_is_approved_with_suggestions(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    order_id = str(uuid.uuid4())
    outcome = await cluster.pipeline.run(order_id, course_request())
    assert outcome.approved and outcome.reason == ""
    assert len(outcome.suggestions) == 3
    assert not {b.title for b in outcome.suggestions} & {"Book A", "Book B"}
    clocks = clocks_by_event(outcome)
    assert sorted(clocks) == ["a", "b", "c", "d", "e", "f"]
    assert_partial_order(clocks)
    assert outcome.final_clock == vclock.merge_all(clocks.values()) == (3, 2, 1)
    assert {e.event: e.service for e in outcome.events}["f"] == "suggestions"
    assert await cluster.wait_empty() == dict.fromkeys(cluster.participants, 0)
    assert logged_events(caplog)[order_id] == clocks


@pytest.mark.parametrize(("overrides", "reason"), REJECTIONS)
async def test_each_rejection_cause(
    cluster: Cluster, overrides: dict[str, object], reason: str
) -> None:
    outcome = await cluster.pipeline.run(str(uuid.uuid4()), course_request(**overrides))
    assert not outcome.approved
    assert reason in outcome.reason
    assert outcome.suggestions == []
    assert "f" not in clocks_by_event(outcome)
    assert set(outcome.cancel_clocks) == set(cluster.participants)
    reported = [e.clock for e in outcome.events] + list(outcome.cancel_clocks.values())
    assert outcome.final_clock == vclock.merge_all(reported)
    assert_partial_order(clocks_by_event(outcome))
    assert await cluster.wait_empty() == dict.fromkeys(cluster.participants, 0)
    assert all(p.clock_errors == 0 for p in cluster.participants.values())


async def test_no_card_digits_reach_fraud_detection_or_suggestions(cluster: Cluster) -> None:
    seen: dict[str, checkout_pb2.OrderData] = {}
    for service in ("fraud-detection", "suggestions"):
        participant = cluster.participants[service]
        original = participant.on_orchestrator_message

        def spy(msg, link, original=original, service=service):  # type: ignore[no-untyped-def]
            if msg.WhichOneof("kind") == "init":
                seen[service] = msg.init.order
            original(msg, link)

        participant.on_orchestrator_message = spy  # type: ignore[method-assign]
    await cluster.pipeline.run(str(uuid.uuid4()), course_request())
    assert set(seen) == {"fraud-detection", "suggestions"}
    for order in seen.values():
        assert "4111111111111111" not in str(order)
        assert order.card.number == "" and order.card.cvv == ""
    assert seen["fraud-detection"].card_summary.last4 == "1111"
    assert not seen["suggestions"].HasField("card_summary")


async def test_200_concurrent_orders_are_answered_and_nothing_is_left_behind(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(20261125)
    print("seed 20261125")
    plans: list[tuple[str, bool, dict[str, object]]] = []
    for _ in range(200):
        if rng.random() < 0.6:
            plans.append((str(uuid.uuid4()), True, {}))
        else:
            overrides, _reason = rng.choice(REJECTIONS)
            plans.append((str(uuid.uuid4()), False, overrides))
    outcomes = await asyncio.wait_for(
        asyncio.gather(
            *(cluster.pipeline.run(oid, course_request(**over)) for oid, _, over in plans)
        ),
        timeout=30,
    )
    for (order_id, should_pass, _), outcome in zip(plans, outcomes, strict=True):
        assert outcome.order_id == order_id
        assert outcome.approved is should_pass
        assert_partial_order(clocks_by_event(outcome))
    assert await cluster.wait_empty() == dict.fromkeys(cluster.participants, 0)
    stats = await cluster.pipeline.stats()
    assert [s.cached_orders for s in stats] == [0, 0, 0]
    assert all(s.healthy for s in stats)
    logged = logged_events(caplog)
    for order_id, _, _ in plans:
        assert_partial_order(logged[order_id])
    assert all(p.clock_errors == 0 for p in cluster.participants.values())


async def test_a_cancelled_order_runs_no_further_event(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    judge = BlockingJudge()
    cluster = await blocking_cluster(judge)
    try:
        order_id = str(uuid.uuid4())
        bad_card = {"number": "4111111111111112", "expirationDate": "12/99", "cvv": "123"}
        outcome = await cluster.pipeline.run(order_id, course_request(creditCard=bad_card))
        assert not outcome.approved and outcome.reason == "The card number is not valid."
        assert judge.started.is_set()
        await asyncio.wait_for(judge.cancelled.wait(), 2)  # d was running: it was stopped
        assert outcome.cancel_clocks["fraud-detection"] == (2, 0, 0)  # knows b, ran nothing
        assert await cluster.wait_empty() == dict.fromkeys(cluster.participants, 0)
        assert cluster.participants["fraud-detection"].events_run == 0
        assert cluster.participants["suggestions"].events_run == 0
        assert set(logged_events(caplog)[order_id]) == {"a", "b", "c"}
    finally:
        await stop_cluster(cluster)


async def test_a_late_update_within_the_final_clock_is_not_an_error(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="bookstore.choreography")
    order_id = str(uuid.uuid4())
    outcome = await cluster.pipeline.run(order_id, course_request())
    assert outcome.final_clock is not None
    assert await cluster.wait_empty() == dict.fromkeys(cluster.participants, 0)
    fd = cluster.participants["fraud-detection"]
    link = PeerLink("fraud-detection", cluster.settings.fraud_detection_address)
    link.start()
    try:
        link.send(
            checkout_pb2.ClockUpdate(
                order_id=common_pb2.OrderId(value=order_id),
                event="c",
                sender="transaction-verification",
                clock=vclock.to_pb(outcome.final_clock),
            )
        )
        for _ in range(100):
            if any("late update" in r.getMessage() for r in caplog.records):
                break
            await asyncio.sleep(0.02)
    finally:
        await link.close()
    assert any("late update" in r.getMessage() for r in caplog.records)
    assert fd.clock_errors == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert fd.orders == {}


async def test_a_service_stopped_mid_flight_fails_the_order_promptly() -> None:
    judge = BlockingJudge()
    cluster = await blocking_cluster(judge)
    try:
        order_id = str(uuid.uuid4())
        run = asyncio.create_task(cluster.pipeline.run(order_id, course_request()))
        await asyncio.wait_for(judge.started.wait(), 2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await cluster.stop("suggestions")
        with pytest.raises(ServiceUnavailable) as caught:
            await asyncio.wait_for(run, 3)
        assert loop.time() - started < 2.5
        assert caught.value.service == "suggestions"
        await asyncio.wait_for(judge.cancelled.wait(), 2)
        others = ("transaction-verification", "fraud-detection")
        assert await cluster.wait_empty(services=others) == dict.fromkeys(others, 0)
        with pytest.raises(ServiceUnavailable):  # refused at once while it is down
            await asyncio.wait_for(cluster.pipeline.run(str(uuid.uuid4()), course_request()), 1)
    finally:
        await stop_cluster(cluster)


async def test_no_outcome_in_time_is_a_checkout_timeout() -> None:
    judge = BlockingJudge()
    cluster = await blocking_cluster(judge, checkout_timeout_s=0.5)
    try:
        with pytest.raises(CheckoutTimeout):
            await asyncio.wait_for(cluster.pipeline.run(str(uuid.uuid4()), course_request()), 3)
        assert judge.cancelled.is_set()
        assert await cluster.wait_empty() == dict.fromkeys(cluster.participants, 0)
    finally:
        await stop_cluster(cluster)


async def test_a_caller_giving_up_during_the_cancel_still_finalizes_the_order() -> None:
    judge = BlockingJudge()
    cluster = await blocking_cluster(judge, checkout_timeout_s=0.3)
    fd = cluster.participants["fraud-detection"]
    original = fd.on_orchestrator_message

    def deaf_to_cancels(msg, link):  # type: ignore[no-untyped-def]
        if msg.WhichOneof("kind") != "cancel":  # no CancelAck: the pipeline waits for it
            original(msg, link)

    fd.on_orchestrator_message = deaf_to_cancels  # type: ignore[method-assign]
    try:
        # The caller's own deadline ends while the pipeline awaits the missing ack.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(cluster.pipeline.run(str(uuid.uuid4()), course_request()), 0.8)
        others = ("transaction-verification", "suggestions")
        assert await cluster.wait_empty(services=others) == dict.fromkeys(others, 0)
    finally:
        await stop_cluster(cluster)


async def test_reports_go_back_on_the_session_that_sent_the_order(cluster: Cluster) -> None:
    second = Pipeline(cluster.settings)
    await second.start()
    try:
        good = course_request()
        bad = course_request(items=[])
        outcomes = await asyncio.wait_for(
            asyncio.gather(
                *(
                    pipeline.run(str(uuid.uuid4()), request)
                    for _ in range(20)
                    for pipeline in (cluster.pipeline, second)
                    for request in (good, bad)
                )
            ),
            timeout=15,
        )
    finally:
        await second.close()
    assert [o.approved for o in outcomes] == [True, False] * 40
    assert await cluster.wait_empty() == dict.fromkeys(cluster.participants, 0)
