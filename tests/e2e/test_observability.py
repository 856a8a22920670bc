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
    # batch calls shared with other orders: each batch a trace of its own, linked to the
    # order's span, with the call in it and the queue's side of that call.
    for step, batch_name, method in (
        (enqueue, "order-queue EnqueueBatch", ENQUEUE_BATCH),
        (execute, "order-queue LeaderBatch", LEADER_BATCH),
    ):
        queued = _batched_calls(receiver, step, batch_name, (method, "order-queue"), count=1)
        assert queued, (batch_name, step.name)
        for batch, call, served in queued:
            assert batch.service == step.service and not batch.parent_span_id.strip("0")
            assert batch.trace_id == call.trace_id == served.trace_id != step.trace_id
    # The commitment: under the execution; its prepares, its logged decision and its
    # commits travel in batches.
    (commitment,) = by_name["two-phase commit"]
    assert commitment.parent_span_id == execute.span_id
    # The books database's reserve and commit travel in batches shared with other
    # orders: each batch is a trace of its own, linked to the commitment, and the
    # database serves its Write call under it.
    books = _batched_calls(
        receiver,
        commitment,
        "books-database write batch",
        ("/bookstore.books.BooksDatabase/Write", "books-database"),
        count=2,
    )
    assert len(books) >= 2, books  # the reserve's batch and the commit's
    for batch, call, served in books:
        assert not batch.parent_span_id.strip("0")  # the root of its own trace
        assert batch.trace_id == call.trace_id == served.trace_id != commitment.trace_id
        assert batch.attributes["bookstore.batch_size"] >= 1
    # The decision is logged in the queue in a LeaderBatch linked to the commitment.
    decisions = _batched_calls(
        receiver, commitment, "order-queue LeaderBatch", (LEADER_BATCH, "order-queue"), count=1
    )
    assert decisions, sorted(s.name for s in receiver.spans())
    for batch, call, served in decisions:
        assert batch.trace_id == call.trace_id == served.trace_id != commitment.trace_id
    # Payment's authorization and capture travel in batches that concurrent orders
    # share: a batch is a trace of its own, linked to the commitment of every order it
    # carries, with the executor's Apply call in it and payment's side of that call.
    payments = _batched_calls(receiver, commitment, "payment batch", (APPLY, "payment"), count=2)
    assert len(payments) >= 2, payments  # the authorization's and the capture's
    for batch, call, served in payments:
        assert batch.service == "order-executor" and not batch.parent_span_id.strip("0")
        assert batch.trace_id == call.trace_id == served.trace_id != commitment.trace_id
        assert batch.attributes["bookstore.batch_size"] >= 1

    for received in receiver.spans():
        for text in received.texts():
            assert CARD not in text and not card_secrets_in(text), (received.name, text)


def _batched_calls(
    receiver: OtlpReceiver,
    caller: ReceivedSpan,
    batch_name: str,
    method: tuple[str, str],
    count: int,
) -> list[tuple[ReceivedSpan, ReceivedSpan, ReceivedSpan]]:
    """The batch spans `batch_name` linked to `caller`, each with its call of `method`
    (name, serving service) and the server's span of it, once `count` of them have
    arrived (or the wait ends)."""
    name, service = method
    deadline = time.monotonic() + WAIT_S
    while True:
        spans = receiver.spans()
        children: dict[str, list[ReceivedSpan]] = {}
        for span in spans:
            children.setdefault(span.parent_span_id, []).append(span)
        found = []
        for batch in spans:
            links = {bytes(link.span_id).hex() for link in batch.span.links}
            if batch.name != batch_name or caller.span_id not in links:
                continue
            for call in children.get(batch.span_id, []):
                served = [s for s in children.get(call.span_id, []) if s.service == service]
                if call.name == name and call.service == batch.service and served:
                    found.append((batch, call, served[0]))
        if len(found) >= count or time.monotonic() > deadline:
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
    roots = {s.name for s in spans if not s.parent_span_id.strip("0")}
    grpc_roots = {name for name in roots if name.startswith("/")}
    assert not grpc_roots, sorted(grpc_roots)
    assert "POST /checkout" in roots


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
        prometheus.wait_until("count(up == 1) == 9")
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
