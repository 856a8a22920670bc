"""Checkout latency with the AI on, against the fake Gemini server.

Starts the whole system (free ports, a temporary data directory) with
GEMINI_API_KEY set and GEMINI_BASE_URL pointing at the fake, then times
sequential POST /checkout requests in each scenario:

- ai: the fake answers every call at once (our overhead: SDK, HTTP, prompts);
- ai-slow: the fake answers every call after --model-ms (a model's think time);
- ai-500: the fake fails every call with HTTP 500 (retried once, then rules);
- ai-hang: the fake never answers (the per-call deadline and the order budget);
- off: a second system without a key (rules and catalogue only), for comparison.

    .venv/bin/python bench/ai_latency.py [--orders 20] [--hang-orders 5] [--model-ms 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))

from checkout_requests import course_page_request
from fakes.gemini import FakeGemini, Reply, Request
from harness import System, start_system

CLEAN = Reply.json({"fraud": False, "score": 0.05, "reason": "Nothing unusual."})
PICKS = Reply.json({"book_ids": ["b010", "b007", "b020"]})


def body() -> dict[str, Any]:
    return course_page_request(
        items=[{"name": "Designing Data-Intensive Applications", "quantity": 1}]
    )


def run(system: System, orders: int) -> tuple[list[float], Counter[str]]:
    times: list[float] = []
    paths: Counter[str] = Counter()
    with httpx.Client(base_url=system.base_url, timeout=30.0) as client:
        client.post("/checkout", json=body())  # warm up connections
        for _ in range(orders):
            started = time.monotonic()
            reply = client.post("/checkout", json=body())
            times.append((time.monotonic() - started) * 1000)
            result = reply.json()
            order = client.get(f"/orders/{result['orderId']}").json()
            events = {e["event"]: e["answeredBy"] for e in order["events"]}
            paths[
                f"{result['status']}: d={events.get('d')} e={events.get('e')} f={events.get('f')}"
            ] += 1
    return times, paths


def report(name: str, times: list[float], paths: Counter[str]) -> None:
    ordered = sorted(times)
    p90 = ordered[max(0, int(len(ordered) * 0.9) - 1)]
    print(
        f"{name:8} n={len(times):3}  median {statistics.median(times):7.1f} ms  "
        f"p90 {p90:7.1f} ms  max {max(times):7.1f} ms"
    )
    for path, count in paths.most_common():
        print(f"{'':10}{count:3} x {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=20)
    parser.add_argument("--hang-orders", type=int, default=5)
    parser.add_argument("--model-ms", type=int, default=300)
    args = parser.parse_args()

    with FakeGemini() as fake:
        env = {
            "GEMINI_API_KEY": "bench-fake-key",
            "GEMINI_BASE_URL": fake.base_url,
            "AI_BREAKER_FAILURES": "1000000",  # measure every call, not the open circuit
        }
        with start_system(env) as system:

            def answer(delay_s: float) -> None:
                def respond(request: Request) -> Reply:
                    reply = PICKS if "book_ids" in request.schema_keys() else CLEAN
                    return reply.after(delay_s)

                fake.respond_with(respond)

            answer(0.0)
            report("ai", *run(system, args.orders))
            answer(args.model_ms / 1000)
            report("ai-slow", *run(system, args.orders))
            fake.always(Reply.status(500))
            report("ai-500", *run(system, args.orders))
            fake.always(Reply.hang())
            report("ai-hang", *run(system, args.hang_orders))
    with start_system() as system:
        report("off", *run(system, args.orders))


if __name__ == "__main__":
    main()
