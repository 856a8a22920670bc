"""The coalescer: concurrent calls become pipelined batches, each caller gets its own outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider

from bookstore.batching import Coalescer
from bookstore.telemetry import metrics, tracing


class Service:
    """A batch endpoint that doubles numbers, refuses negative ones, and can be held."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_next: Exception | None = None

    async def send(self, requests: Sequence[int]) -> list[int | BaseException]:
        self.batches.append(list(requests))
        await self.gate.wait()
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        return [ValueError(f"negative: {r}") if r < 0 else 2 * r for r in requests]


async def settle() -> None:
    """Let every ready task run (calls queue up, batches leave)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_lone_call_is_sent_at_once_alone() -> None:
    service = Service()
    coalescer = Coalescer(service.send, "test", service="payment")
    assert await coalescer.call(21) == 42
    assert service.batches == [[21]]


async def test_calls_arriving_while_a_batch_is_on_the_wire_go_together() -> None:
    service = Service()
    service.gate.clear()
    coalescer = Coalescer(service.send, "test", service="payment", max_in_flight=1)
    first = asyncio.create_task(coalescer.call(1))
    await settle()
    rest = [asyncio.create_task(coalescer.call(n)) for n in range(2, 7)]
    await settle()
    assert service.batches == [[1]]  # the others wait for the batch on the wire
    service.gate.set()
    assert await asyncio.gather(first, *rest) == [2, 4, 6, 8, 10, 12]
    assert service.batches == [[1], [2, 3, 4, 5, 6]]
    assert (coalescer.batches, coalescer.requests) == (2, 6)


async def test_batches_are_pipelined_up_to_max_in_flight_and_cut_at_max_batch() -> None:
    service = Service()
    service.gate.clear()
    coalescer = Coalescer(service.send, "test", service="payment", max_batch=3, max_in_flight=2)
    calls = [asyncio.create_task(coalescer.call(n)) for n in range(8)]
    await settle()
    assert service.batches == [[0], [1]]  # two batches on the wire, the rest waits
    service.gate.set()
    assert await asyncio.gather(*calls) == [2 * n for n in range(8)]
    assert service.batches == [[0], [1], [2, 3, 4], [5, 6, 7]]


async def test_an_error_for_one_request_reaches_only_its_caller() -> None:
    service = Service()
    coalescer = Coalescer(service.send, "test", service="payment", max_in_flight=1)
    outcomes = await asyncio.gather(
        *(coalescer.call(n) for n in (1, -1, 2)), return_exceptions=True
    )
    assert outcomes[0] == 2 and outcomes[2] == 4
    assert isinstance(outcomes[1], ValueError) and str(outcomes[1]) == "negative: -1"


async def test_a_failed_batch_fails_its_callers_and_the_next_batch_is_sent() -> None:
    service = Service()
    service.fail_next = ConnectionError("unreachable")
    coalescer = Coalescer(service.send, "test", service="payment")
    with pytest.raises(ConnectionError, match="unreachable"):
        await coalescer.call(1)
    assert await coalescer.call(2) == 4


async def test_a_send_answering_the_wrong_number_of_outcomes_fails_the_batch() -> None:
    async def none(requests: Sequence[int]) -> list[int | BaseException]:
        return []

    coalescer = Coalescer(none, "none", service="payment")
    with pytest.raises(RuntimeError, match="0 outcomes for a batch of 1"):
        await coalescer.call(1)


async def test_a_caller_cancelled_before_its_batch_leaves_is_not_sent() -> None:
    service = Service()
    service.gate.clear()
    coalescer = Coalescer(service.send, "test", service="payment", max_in_flight=1)
    first = asyncio.create_task(coalescer.call(1))
    await settle()
    gone = asyncio.create_task(coalescer.call(2))
    kept = asyncio.create_task(coalescer.call(3))
    await settle()
    gone.cancel()
    service.gate.set()
    assert await first == 2 and await kept == 6
    assert service.batches == [[1], [3]]


def test_bounds_must_be_positive_and_the_service_known() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Coalescer(Service().send, "test", service="payment", max_batch=0)
    with pytest.raises(ValueError, match="'fraud' is not one of"):
        Coalescer(Service().send, "test", service="fraud")


async def test_each_batch_size_is_observed_by_service() -> None:
    def count() -> float:
        value = metrics.REGISTRY.get_sample_value(
            "bookstore_batched_requests_count", {"service": "order-queue"}
        )
        return value or 0.0

    before = count()
    coalescer = Coalescer(Service().send, "test", service="order-queue")
    await asyncio.gather(*(coalescer.call(n) for n in range(3)))
    assert count() - before == coalescer.batches


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.integers(-5, 50), min_size=1, max_size=40),
    max_batch=st.integers(1, 8),
    max_in_flight=st.integers(1, 3),
)
def test_every_caller_gets_exactly_its_own_outcome(
    values: list[int], max_batch: int, max_in_flight: int
) -> None:
    async def scenario() -> None:
        service = Service()
        coalescer = Coalescer(
            service.send,
            "test",
            service="payment",
            max_batch=max_batch,
            max_in_flight=max_in_flight,
        )
        outcomes = await asyncio.gather(
            *(coalescer.call(v) for v in values), return_exceptions=True
        )
        for value, outcome in zip(values, outcomes, strict=True):
            if value < 0:
                assert isinstance(outcome, ValueError) and str(value) in str(outcome)
            else:
                assert outcome == 2 * value
        sent = [r for batch in service.batches for r in batch]
        assert sorted(sent) == sorted(values)  # each request sent exactly once
        assert all(1 <= len(batch) <= max_batch for batch in service.batches)

    asyncio.run(scenario())


async def test_with_tracing_a_batch_call_carries_its_callers_contexts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The batch's call names every traced caller (W3C traceparent) and the batch's
    size, for the server's span to link; a call outside a batch carries its own span's
    context instead, so the server's span continues that trace."""
    monkeypatch.setattr(tracing, "_enabled", True)
    tracer = TracerProvider().get_tracer("test")
    seen: list[dict[str, str]] = []

    async def send(requests: Sequence[int]) -> list[int]:
        seen.append(dict(tracing.call_metadata() or ()))
        await asyncio.sleep(0)
        return list(requests)

    coalescer = Coalescer(send, "test batch", service="payment")

    async def traced_call(n: int) -> tuple[int, str]:
        with tracer.start_as_current_span(f"order {n}"):
            return await coalescer.call(n), tracing.caller_context()

    held = asyncio.ensure_future(coalescer.call(0))  # an untraced caller, alone
    await settle()
    answers = await asyncio.gather(*(traced_call(n) for n in (1, 2, 3)))
    await held
    assert [n for n, _ in answers] == [1, 2, 3]
    carried = {
        caller for metadata in seen[1:] for caller in metadata[tracing.BATCH_CALLERS].split()
    }
    assert carried == {context for _, context in answers}
    assert all(context.startswith("00-") and len(context) == 55 for context in carried)
    assert seen[0] == {}  # the untraced caller's batch: its server starts no trace
    assert sum(int(metadata[tracing.BATCH_SIZE]) for metadata in seen[1:]) == 3

    with tracer.start_as_current_span("outside a batch"):
        alone = dict(tracing.call_metadata() or ())
        assert alone["traceparent"] == tracing.caller_context()
