"""Which traces are exported: a parent-based ratio sampler, 10% unless configured.

Exporting every span costs a third of the throughput here (README, Performance): the
SDK's span and its OTLP encoding cost a few hundred microseconds of CPU each, and a
checkout makes about fourteen. So, unless `OTEL_TRACES_SAMPLER` names another sampler,
a trace is kept at the ratio `DEFAULT_RATIO` of its root (the checkout's HTTP request,
by its trace id), and every other span follows its parent's decision: a checkout is
exported whole or not at all.

A batch call (the books database's, payment's, the queue's) starts a trace of its own,
linked to the spans of the callers it carries (`tracing.carry_batch`). It carries only
sampled callers, and starts no trace when it carries none; its root span (a gRPC server
span with no parent: the only gRPC span that starts a trace, `tracing._instrument_grpc`)
is then always kept, so that every exported checkout keeps its batches.

`OTEL_TRACES_SAMPLER=parentbased_traceidratio` with `OTEL_TRACES_SAMPLER_ARG` sets the
ratio of this sampler (the specification's default argument is 1.0); any other
`OTEL_TRACES_SAMPLER` (`parentbased_always_on`: every trace) is the SDK's own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind, TraceState
from opentelemetry.util.types import Attributes

DEFAULT_RATIO = 0.1
_RATIO_SAMPLER = "parentbased_traceidratio"


class BatchOrRatio(Sampler):
    """A root span: kept if it is a gRPC server span (a batch of sampled callers),
    else at `ratio` by its trace id."""

    def __init__(self, ratio: float) -> None:
        self._ratio = TraceIdRatioBased(ratio)

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if kind is SpanKind.SERVER and attributes and attributes.get("rpc.system") == "grpc":
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, trace_state)
        return self._ratio.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"BatchOrRatio{{{self._ratio.rate}}}"


def sampler_from_env(env: Mapping[str, str]) -> Sampler | None:
    """The sampler the variables ask for; None: the SDK's own (it reads them itself)."""
    name = env.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if name not in ("", _RATIO_SAMPLER):
        return None
    ratio = DEFAULT_RATIO if not name else 1.0
    raw = env.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    if name and raw:
        try:
            ratio = float(raw)
        except ValueError:
            ratio = 1.0  # as the SDK does with a malformed argument
        if not 0.0 <= ratio <= 1.0:
            ratio = 1.0
    return ParentBased(BatchOrRatio(ratio))
