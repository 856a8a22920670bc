"""An order's events as a ShiViz log (https://bestchai.bitbucket.io/shiviz/).

The text has the layout ShiViz reads from a file:

    line 1   the parser regular expression (paste it into ShiViz's "log parsing
             regular expression" field when pasting the log by hand)
    line 2   empty: no delimiter between executions, the log holds one order
    line 3+  one line per event:  HOST CLOCK DESCRIPTION

for example

    transaction-verification {"transaction-verification":1} a items: ok

HOST is the service that ran the event; CLOCK is the event's vector clock as a
JSON object keyed by host, zero entries left out (ShiViz wants the first event
of a host to carry 1 for itself and every later one exactly one more, which is
what our clocks do: a service ticks only on its own events). Events come in a
linear extension of happens-before: by the sum of their entries, then by the
time their report arrived.

The order's end is one more event on the host "orchestrator": its clock is the
final clock (the element-wise max of every event's clock and, for a cancelled
order, of every service's clock at the cancel) plus `"orchestrator": 1`, so
ShiViz draws an arrow into it from the last event of each service it covers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bookstore import vclock
from bookstore.settings import CHECKOUT_SERVICES
from bookstore.vclock import Clock

REGEX = r"(?<host>\S+) (?<clock>\{.*?\}) (?<event>.*)"
ORCHESTRATOR_HOST = "orchestrator"


@dataclass(frozen=True)
class TraceEvent:
    host: str
    clock: dict[str, int]
    description: str


def _clock(raw: Any) -> Clock | None:
    """A well-formed clock (one entry per checkout service), or None."""
    if not isinstance(raw, Sequence) or isinstance(raw, str) or len(raw) != vclock.SIZE:
        return None
    if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in raw):
        return None
    return tuple(raw)


def _seconds(at: Any) -> float:
    """A report time given as unix seconds or RFC 3339; 0 when neither."""
    if isinstance(at, int | float) and not isinstance(at, bool):
        return float(at)
    if isinstance(at, str):
        try:
            return datetime.fromisoformat(at).timestamp()
        except ValueError:
            return 0.0
    return 0.0


def _as_json_clock(clock: Sequence[int]) -> dict[str, int]:
    return {host: n for host, n in zip(CHECKOUT_SERVICES, clock, strict=True) if n > 0}


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _event_description(ev: Mapping[str, Any]) -> str:
    letter = ev.get("event", "?")
    name = ev.get("name", "")
    if ev.get("ok", False):
        outcome = "ok"
    else:
        reason = _one_line(ev.get("reason") or "")
        outcome = f"failed: {reason}" if reason else "failed"
    return _one_line(f"{letter} {name}: {outcome}")


def events_of(order: Mapping[str, Any]) -> list[TraceEvent]:
    """The order's events in ShiViz form, the end of the order last."""
    timed: list[tuple[int, float, int, TraceEvent]] = []
    final: Clock = vclock.ZERO
    for i, ev in enumerate(order.get("events") or []):
        clock = _clock(ev.get("clock"))
        service = ev.get("service")
        if clock is None or service not in CHECKOUT_SERVICES:
            continue
        final = vclock.merge(final, clock)
        when = _seconds(ev.get("at"))
        event = TraceEvent(service, _as_json_clock(clock), _event_description(ev))
        timed.append((sum(clock), when, i, event))
    timed.sort(key=lambda t: t[:3])
    result = [t[3] for t in timed]

    cancel = order.get("cancel") or {}
    cancel_clocks = cancel.get("clocks") or {} if isinstance(cancel, Mapping) else {}
    acks: list[str] = []
    for service in CHECKOUT_SERVICES:
        clock = _clock(cancel_clocks.get(service))
        if clock is not None:
            final = vclock.merge(final, clock)
            acks.append(f"{service} {vclock.fmt(clock)}")
    reported = _clock(order.get("vectorClock"))
    if reported is not None:
        final = vclock.merge(final, reported)
    if not result and not acks:
        return result
    status = _one_line(order.get("status") or "unknown")
    text = f"end {status}, final clock {vclock.fmt(final)}"
    if acks:
        text += "; cancelled, clocks at cancel: " + ", ".join(acks)
    end_clock = {**_as_json_clock(final), ORCHESTRATOR_HOST: 1}
    result.append(TraceEvent(ORCHESTRATOR_HOST, end_clock, _one_line(text)))
    return result


def shiviz_log(order: Mapping[str, Any]) -> str:
    """The whole file: regex line, empty delimiter line, one line per event."""
    lines = [REGEX, ""]
    for ev in events_of(order):
        clock = json.dumps(ev.clock, separators=(",", ":"))
        lines.append(f"{ev.host} {clock} {ev.description}")
    return "\n".join(lines) + "\n"
