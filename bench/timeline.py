"""Where one lone checkout's milliseconds go: its spans, as a timeline.

    PYTHONPATH=src .venv/bin/python bench/timeline.py --orders 40

Starts the system with every span exported to a test OTLP receiver, sends
checkouts one at a time (one client, nothing else running), then prints, for
each span name of a checkout's trace (and of the batch calls linked to it), the
median start and end offset from the HTTP request's start over the orders,
and the timeline of the order of median latency. Tracing costs a few hundred
microseconds per span, so the offsets run a little longer than without it; the
order of the steps and their shares are what it shows. Run it from each tree
(with that tree's PYTHONPATH) to compare.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
sys.path.insert(0, str(ROOT / "tests" / "support"))

from checkout_requests import course_page_request  # noqa: E402
from fakes.otlp import OtlpReceiver, ReceivedSpan, timeline  # noqa: E402
from harness import start_system  # noqa: E402

ORDER_ID = "bookstore.order_id"


def _trace(spans: list[ReceivedSpan], order_id: str) -> list[ReceivedSpan]:
    """The order's trace, and the spans of the batch calls linked to it."""
    ids = {s.trace_id for s in spans if s.attributes.get(ORDER_ID) == order_id}
    linked = [s for s in spans if any(bytes(link.trace_id).hex() in ids for link in s.span.links)]
    linked_ids = {s.trace_id for s in linked}
    return [s for s in spans if s.trace_id in ids or s.trace_id in linked_ids]


def _offsets(trace: list[ReceivedSpan]) -> dict[str, tuple[float, float]]:
    """Span key -> (start, end) in ms from the trace's first span (first of each key)."""
    t0 = min(s.span.start_time_unix_nano for s in trace)
    out: dict[str, tuple[float, float]] = {}
    for s in sorted(trace, key=lambda s: s.span.start_time_unix_nano):
        key = f"{s.service}: {s.name}"
        out.setdefault(
            key, ((s.span.start_time_unix_nano - t0) / 1e6, (s.span.end_time_unix_nano - t0) / 1e6)
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args(argv)
    body = course_page_request()
    latencies: dict[str, float] = {}
    with OtlpReceiver() as receiver:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_TRACES_SAMPLER": "parentbased_always_on",  # every order (default: 10%)
            "BOOKSTORE_LOG_LEVEL": "WARNING",
            "BOOKS_INITIAL_STOCK": "1000000",
        }
        with start_system(env) as system, httpx.Client(base_url=system.base_url) as client:
            for _ in range(args.warmup):
                client.post("/checkout", json=body, timeout=30)
            for _ in range(args.orders):
                started = time.perf_counter()
                answer = client.post("/checkout", json=body, timeout=30).json()
                latencies[answer["orderId"]] = (time.perf_counter() - started) * 1000
            time.sleep(2.0)  # the last exports
            spans = receiver.spans()
    by_key: dict[str, list[tuple[float, float]]] = defaultdict(list)
    traces = {order_id: _trace(spans, order_id) for order_id in latencies}
    # An order whose spans were not all exported (a loaded machine) is left out.
    traces = {order_id: trace for order_id, trace in traces.items() if trace}
    latencies = {order_id: latencies[order_id] for order_id in traces}
    for trace in traces.values():
        for key, offsets in _offsets(trace).items():
            by_key[key].append(offsets)
    ms = sorted(latencies.values())
    print(f"{len(ms)} lone checkouts: p50 {statistics.median(ms):.1f} ms, max {ms[-1]:.1f} ms")
    print("\nmedian start / end from the first span (ms), over the orders:")
    rows = sorted(by_key.items(), key=lambda kv: statistics.median(o[0] for o in kv[1]))
    for key, offsets in rows:
        if len(offsets) < len(traces) // 2:
            continue
        start = statistics.median(o[0] for o in offsets)
        end = statistics.median(o[1] for o in offsets)
        print(f"  {start:7.2f} {end:7.2f}  {key}")
    median_order = sorted(latencies, key=latencies.__getitem__)[len(latencies) // 2]
    print(f"\nthe order of median latency ({latencies[median_order]:.1f} ms):")
    print(timeline(traces[median_order]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
