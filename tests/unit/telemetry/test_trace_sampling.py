"""The shipped sampler: a checkout's trace is kept at 10% by its trace id, whole (every
span follows its parent), and a batch call's trace, which only sampled callers start,
is always kept; the standard variables choose another ratio or sampler."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Decision, Sampler
from opentelemetry.trace import SpanKind

from bookstore.telemetry import tracing
from bookstore.telemetry.trace_sampling import DEFAULT_RATIO, sampler_from_env

# TraceIdRatioBased keeps a trace when the low 64 bits of its id are under ratio * 2^64.
_KEPT_AT_10 = (1 << 64) // 20  # 5%: under the 10% bound
_DROPPED_AT_10 = (1 << 64) // 5  # 20%: over it


def _sampler(**env: str) -> Sampler:
    sampler = sampler_from_env(env)
    assert sampler is not None
    return sampler


def _root(sampler: Sampler, trace_id: int, kind: SpanKind, **attributes: str) -> Decision:
    return sampler.should_sample(None, trace_id, "root", kind, attributes).decision


def test_without_a_sampler_named_a_tenth_of_the_checkouts_are_kept() -> None:
    sampler = _sampler()
    assert DEFAULT_RATIO == 0.1
    assert _root(sampler, _KEPT_AT_10, SpanKind.SERVER).is_sampled()
    assert not _root(sampler, _DROPPED_AT_10, SpanKind.SERVER).is_sampled()


def test_a_batch_calls_root_span_is_always_kept() -> None:
    sampler = _sampler()
    decision = _root(sampler, _DROPPED_AT_10, SpanKind.SERVER, **{"rpc.system": "grpc"})
    assert decision.is_sampled()


def test_every_span_of_a_trace_follows_its_root() -> None:
    class Fixed(RandomIdGenerator):
        def __init__(self, trace_id: int) -> None:
            self.trace_id = trace_id

        def generate_trace_id(self) -> int:
            return self.trace_id

    for trace_id, kept in ((_KEPT_AT_10, True), (_DROPPED_AT_10, False)):
        exporter = InMemorySpanExporter()
        provider = TracerProvider(sampler=_sampler(), id_generator=Fixed(trace_id))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer(__name__)
        with tracer.start_as_current_span("checkout"), tracer.start_as_current_span("event a"):
            pass
        provider.shutdown()
        assert len(exporter.get_finished_spans()) == (2 if kept else 0)


def test_the_standard_variables_choose_the_ratio_or_another_sampler() -> None:
    half = _sampler(OTEL_TRACES_SAMPLER="parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG="0.5")
    assert _root(half, _DROPPED_AT_10, SpanKind.SERVER).is_sampled()
    assert not _root(half, (1 << 64) - 1, SpanKind.SERVER).is_sampled()
    every = _sampler(OTEL_TRACES_SAMPLER="parentbased_traceidratio")  # the argument's default
    assert _root(every, (1 << 64) - 1, SpanKind.SERVER).is_sampled()
    assert sampler_from_env({"OTEL_TRACES_SAMPLER": "parentbased_always_on"}) is None


def test_a_batch_carries_only_sampled_callers() -> None:
    sampled = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    unsampled = "00-" + "3" * 32 + "-" + "4" * 16 + "-00"
    tracing.carry_batch([unsampled, "", sampled], 3)
    assert tracing._batch.get() == (
        (tracing.BATCH_CALLERS, sampled),
        (tracing.BATCH_SIZE, "3"),
    )
    tracing.carry_batch([unsampled], 1)
    assert tracing._batch.get() is None
