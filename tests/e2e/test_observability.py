"""The whole system with tracing on, exporting to a test OTLP receiver, and scraped by
a real Prometheus: one checkout is one trace that follows the choreography's messages,
and every dashboard query returns data after a few checkouts."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from checkout_requests import CARD, card_secrets_in, course_page_request
from fakes.otlp import OtlpReceiver, ReceivedSpan, timeline
from harness import System, start_system
from prometheus_harness import RealPrometheus

pytestmark = pytest.mark.e2e

ORDER_ID = "bookstore.order_id"
EVENT = "bookstore.event"
CLOCK = "bookstore.vector_clock"
WAIT_S = 60.0
APPLY = "/bookstore.payment.Payment/Apply"
ENQUEUE_BATCH = "/bookstore.queue.OrderQueue/EnqueueBatch"
LEADER_BATCH = "/bookstore.queue.OrderQueue/LeaderBatch"
TOKENIZE_BATCH = "/bookstore.payment.Payment/TokenizeBatch"
SERVICE_OF_EVENT = ["transaction-verification"] * 3 + ["fraud-detection"] * 2 + ["suggestions"]
DASHBOARD = (
    Path(__file__).resolve().parents[2] / "deploy/observability/grafana/dashboards/bookstore.json"
)


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


@pytest.fixture(scope="module")
def traced(receiver: OtlpReceiver) -> Iterator[System]:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # export within a tenth of a second
        # Every checkout's trace, not the shipped 10% (telemetry/trace_sampling.py).
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
        "ORCHESTRATOR_CHECKOUT_TIMEOUT_S": "1",
    }
    with start_system(env) as running:
        yield running


def _checkout(system: System, **changes: object) -> dict[str, object]:
    answer = httpx.post(
        f"{system.base_url}/checkout", json=course_page_request(**changes), timeout=30
    )
    body: dict[str, object] = answer.json()
    return body


def _spans_of(receiver: OtlpReceiver, order_id: str, until: set[str]) -> list[ReceivedSpan]:
    """The order's spans once those in `until` ("service/name") have all arrived (or the
    wait ends)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        spans = [s for s in receiver.spans() if s.attributes.get(ORDER_ID) == order_id]
        arrived = {f"{s.service}/{s.name.partition(':')[0]}" for s in spans}
        if until <= arrived or time.monotonic() > deadline:
            return spans
        time.sleep(0.1)


def test_one_checkout_is_one_trace_following_the_clock_messages(
    traced: System, receiver: OtlpReceiver
) -> None:
    body = _checkout(traced)
    assert body["status"] == "Order Approved", body
    order_id = str(body["orderId"])
    expected = {
        *(f"{service}/event {e}" for service, e in zip(SERVICE_OF_EVENT, "abcdef", strict=True)),
        "orchestrator/POST /checkout",
        "orchestrator/final clock broadcast",
        "orchestrator/enqueue",
        "order-executor/execute",
        "order-executor/two-phase commit",
    }
    names = {name.partition("/")[2] for name in expected}
    spans = _spans_of(receiver, order_id, expected)
    by_name: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        key = span.name.partition(":")[0]
        by_name.setdefault(key, []).append(span)
    assert names <= set(by_name), sorted(by_name)

    assert len({s.trace_id for s in spans}) == 1
    print(timeline(spans))  # the trace, drawn (pytest -s shows it)
    services = {s.service for s in spans}
    # (The queue, the books database and payment serve the order in batch calls, each a
    # trace of its own linked to the order's span: see below.)
    assert services >= {
        "orchestrator",
        "transaction-verification",
        "fraud-detection",
        "suggestions",
        "order-executor",
    }

    events = {e: by_name[f"event {e}"] for e in "abcdef"}
    assert all(len(found) == 1 for found in events.values()), events
    span = {e: found[0] for e, found in events.items()}
    for e, served_by in zip("abcdef", SERVICE_OF_EVENT, strict=True):
        assert span[e].service == served_by
        assert span[e].attributes[EVENT] == e
        assert len(span[e].attributes[CLOCK]) == 3

    (request,) = by_name["POST /checkout"]
    # a and b start from the InitOrder, sent while the HTTP request's span was current.
    assert span["a"].parent_span_id == span["b"].parent_span_id == request.span_id
    # c after a (local); d after b (TV's clock message); f after e (FD's clock message).
    assert span["c"].parent_span_id == span["a"].span_id
    assert span["d"].parent_span_id == span["b"].span_id
    assert span["f"].parent_span_id == span["e"].span_id
    # e waits for c (TV's message) and d (local): a child of one, linked to the other.
    parents = {span["c"].span_id, span["d"].span_id}
    assert span["e"].parent_span_id in parents
    linked = {bytes(link.span_id).hex() for link in span["e"].span.links}
    assert linked == parents - {span["e"].parent_span_id}
    # The clocks grow along the choreography.
    assert span["f"].attributes[CLOCK] == [3, 2, 1]

    (enqueue,) = by_name["enqueue"]
    (execute,) = by_name["execute"]
    assert execute.service == "order-executor"
    assert execute.parent_span_id == enqueue.span_id
    # The order's enqueue, and its completion under the execution, went to the queue in
    # batch calls shared with other orders: the queue's span for each batch call is the
    # root of a trace of its own, linked to the span of every order the batch carries.
    for step, method in ((enqueue, ENQUEUE_BATCH), (execute, LEADER_BATCH)):
        assert _batches(receiver, step, method, "order-queue", count=1), (method, step.name)
    # The commitment: under the execution; its prepares, its logged decision and its
    # commits travel in batches, each linked to it.
    (commitment,) = by_name["two-phase commit"]
    assert commitment.parent_span_id == execute.span_id
    for method, service, count in (
        ("/bookstore.books.BooksDatabase/Write", "books-database", 2),  # reserve, commit
        (LEADER_BATCH, "order-queue", 1),  # the decision
        (APPLY, "payment", 2),  # authorization, capture
    ):
        batches = _batches(receiver, commitment, method, service, count)
        assert len(batches) >= count, (method, sorted(s.name for s in receiver.spans()))
    # Event a read the stock and started the card's exchange (event c takes the token),
    # in batches too.
    assert _batches(
        receiver, span["a"], "/bookstore.books.BooksDatabase/ReadStock", "books-database", count=1
    )
    assert _batches(receiver, span["a"], TOKENIZE_BATCH, "payment", count=1)

    for received in receiver.spans():
        for text in received.texts():
            assert CARD not in text and not card_secrets_in(text), (received.name, text)


def _batches(
    receiver: OtlpReceiver, caller: ReceivedSpan, method: str, service: str, count: int
) -> list[ReceivedSpan]:
    """`service`'s spans of batch calls of `method` linked to `caller`, once `count` of
    them have arrived (or the wait ends): each the root of its own trace, a server span
    carrying the batch's size."""
    deadline = time.monotonic() + WAIT_S
    while True:
        found = [
            span
            for span in receiver.spans()
            if span.name == method
            and span.service == service
            and caller.span_id in {bytes(link.span_id).hex() for link in span.span.links}
        ]
        if len(found) >= count or time.monotonic() > deadline:
            for batch in found:
                assert not batch.parent_span_id.strip("0")  # the root of its own trace
                assert batch.trace_id != caller.trace_id
                assert batch.attributes["bookstore.batch_size"] >= 1
            return found
        time.sleep(0.1)


def test_background_calls_start_no_trace(traced: System, receiver: OtlpReceiver) -> None:
    """Bully pings, the books database's replication, the leader's dequeue polls and the
    health checks run all the time; none of them is exported as a trace of its own."""
    body = _checkout(traced)
    assert body["status"] == "Order Approved", body
    _spans_of(receiver, str(body["orderId"]), {"order-executor/two-phase commit"})
    time.sleep(1.0)  # a second of pings, heartbeats and polls, exported within 0.1 s
    spans = receiver.spans()
    assert any(s.name.startswith("/bookstore.") for s in spans)  # calls of checkouts are
    roots = [s for s in spans if not s.parent_span_id.strip("0")]
    # The only gRPC roots are the checkouts' batch calls, each linked to its orders.
    unlinked = {s.name for s in roots if s.name.startswith("/") and not s.span.links}
    assert not unlinked, sorted(unlinked)
    assert "POST /checkout" in {s.name for s in roots}


def _metrics_jobs(system: System) -> dict[str, list[str]]:
    jobs = {"orchestrator": [system.env["ORCHESTRATOR_ADDRESS"]]}
    for job, variable in [
        ("transaction-verification", "TRANSACTION_VERIFICATION_ADDRESS"),
        ("fraud-detection", "FRAUD_DETECTION_ADDRESS"),
        ("suggestions", "SUGGESTIONS_ADDRESS"),
        ("order-queue", "ORDER_QUEUE_ADDRESS"),
    ]:
        jobs[job] = [_plus_offset(system.env[variable])]
    jobs["order-executor"] = [
        _plus_offset(entry.partition("=")[2])
        for entry in system.env["ORDER_EXECUTOR_ADDRESSES"].split(",")
    ]
    return jobs


def _plus_offset(address: str) -> str:
    host, _, port = address.rpartition(":")
    return f"{host}:{int(port) + 1000}"


def test_every_dashboard_query_returns_data_from_the_running_system(traced: System) -> None:
    with RealPrometheus(_metrics_jobs(traced)) as prometheus:
        # Every target scraped at least once (on a busy machine one scrape or another
        # misses its 0.9 s timeout, so all nine need not be up at one instant).
        prometheus.wait_until("count(max_over_time(up[1m]) == 1) == 9", timeout_s=WAIT_S)
        for _ in range(3):
            assert _checkout(traced)["status"] == "Order Approved"
        assert _checkout(traced, termsAccepted=False)["status"] == "Order Rejected"
        # A checkout service that does not answer: a 503 (an HTTP error to chart).
        tv = traced.pid("transaction-verification")
        os.kill(tv, signal.SIGSTOP)
        try:
            assert (
                httpx.post(
                    f"{traced.base_url}/checkout", json=course_page_request(), timeout=30
                ).status_code
                == 503
            )
        finally:
            os.kill(tv, signal.SIGCONT)
        # A gRPC error: a health check of a service nobody serves (NOT_FOUND).
        httpx.get(f"{traced.base_url}/api/cluster", timeout=30)
        _health_check_unknown(traced.env["ORDER_QUEUE_ADDRESS"])
        # A leader change, for the annotation's query: the leader is killed.
        leader = traced.pid("order-executor-4")
        os.kill(leader, signal.SIGKILL)
        traced.wait_restarted("order-executor-4", leader)
        assert _checkout(traced)["status"] == "Order Approved"
        dashboard = json.loads(DASHBOARD.read_text())
        queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
        queries += [a["expr"] for a in dashboard["annotations"]["list"]]
        for query in queries:
            prometheus.wait_until(query, timeout_s=WAIT_S)


def _health_check_unknown(address: str) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        with pytest.raises(grpc.RpcError):
            stub.Check(health_pb2.HealthCheckRequest(service="no-such-service"), timeout=5)
