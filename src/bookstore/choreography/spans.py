"""The span of a checkout event (when tracing is on).

Each event is a span whose parent is the span of the message that enabled it: the
InitOrder for events with no dependency (a and b), otherwise the dependency known
last, its span's context carried in the ClockUpdate; it is linked to its other
dependencies' spans. Its ClockUpdates carry its own context on to the peers.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from opentelemetry.trace import INVALID_SPAN, Link, Span, Tracer, get_current_span

from bookstore.choreography.events import EventResult, EventSpec
from bookstore.telemetry import propagation, tracing
from bookstore.vclock import Clock


def event_span(
    tracer: Tracer,
    order_id: str,
    spec: EventSpec,
    contexts: dict[str, str],
    order_context: str,
) -> AbstractContextManager[Span]:
    """The span to run `spec`'s event in; `contexts` maps each event known, in the order
    they became known, to its span's context. Nothing at all when tracing is off."""
    if not tracing.enabled():
        return nullcontext(INVALID_SPAN)
    parent, links = _parents(spec, contexts, order_context)
    return propagation.order_span(
        tracer,
        f"event {spec.event}: {spec.name}",
        order_id,
        parent=parent,
        links=links,
        attributes={"bookstore.event": spec.event},
    )


def _parents(
    spec: EventSpec, contexts: dict[str, str], order_context: str
) -> tuple[str, list[Link]]:
    """The context of the span that enabled `spec`'s event, and links to the others."""
    known = list(contexts)
    deps = sorted((d for d in spec.deps if d in contexts), key=known.index)
    if not deps:
        return order_context, []
    links = []
    for dep in deps[:-1]:
        context = propagation.extract(contexts[dep])
        if context is not None:
            links.append(Link(get_current_span(context).get_span_context()))
    return contexts[deps[-1]], links


def current_context() -> str:
    """The context of the current event's span, for its ClockUpdates ("" when off)."""
    return propagation.inject() if tracing.enabled() else ""


def record_outcome(clock: Clock, result: EventResult) -> None:
    """Put the event's clock and outcome on its span (the current one)."""
    if not tracing.enabled():
        return
    span: Span = get_current_span()
    span.set_attribute(propagation.VECTOR_CLOCK, list(clock))
    span.set_attribute("bookstore.ok", result.ok)
    span.set_attribute("bookstore.answered_by", result.answered_by)
