"""Admission control's core against a model shop, on simulated time: a flood's goodput
and admitted latency with the slots that count the unqueued time, and without.

    PYTHONPATH=src .venv/bin/python bench/admission_model.py

No process, no socket, no clock: `orchestrator/admission.py` itself, driven by a
discrete-event loop, so the figures do not depend on what else the machine runs. The
shop answers a checkout admitted with N in flight after max(base_s, N / rate) (its
base latency, or its queue when N exceeds what it serves at once), times a lognormal
spread. 50 closed-loop clients for `--phase-s`, then 500 for as long (both send again
at once after any answer, as wrk does); a waiter still waiting after the deadline is
answered 503. `without` is the same core fed no arrival times (its unqueued time stays
0: the slots follow the answer rate times the target alone, as before). Figures count
the answers given before the flood ends: after it, the line drains, and its last
waiters, nobody newer behind them, are admitted after waiting up to the deadline.
"""

from __future__ import annotations

import argparse
import heapq
import random
from dataclasses import dataclass, field

from bookstore.orchestrator.admission import Admission

SHOPS = {  # name: (base latency s, answers/s at most)
    "quiet machine (base 0.15 s, 100/s)": (0.15, 100.0),
    "busy machine (base 0.6 s, 60/s)": (0.6, 60.0),
    "loaded machine (base 1.3 s, 60/s)": (1.3, 60.0),
}


@dataclass
class Phase:
    executed: int = 0
    refused: int = 0
    latencies: list[float] = field(default_factory=list)


@dataclass
class Run:
    args: argparse.Namespace
    base_s: float
    rate: float
    feed: bool  # whether the core is told when an answered checkout arrived
    rng: random.Random = field(default_factory=lambda: random.Random(1))
    events: list[tuple[float, int, str, int, float]] = field(default_factory=list)
    seq: int = 0

    def at(self, when: float, kind: str, client: int, arrived: float) -> None:
        self.seq += 1
        heapq.heappush(self.events, (when, self.seq, kind, client, arrived))

    def service_s(self, in_flight: int) -> float:
        return max(self.base_s, in_flight / self.rate) * self.rng.lognormvariate(0.0, 0.3)

    def simulate(self) -> tuple[Phase, Phase]:
        a = self.args
        core = Admission(64, a.wait_s, 1.0, 1024, 16, 0.5)
        phases = (Phase(), Phase())
        waiting: dict[int, tuple[int, float]] = {}  # token -> (client, arrived)
        flood_at, end = a.phase_s, 2 * a.phase_s
        for client in range(a.flood_clients):
            self.at(0.0 if client < a.reference_clients else flood_at, "send", client, 0.0)
        while self.events:
            now, _, kind, client, arrived = heapq.heappop(self.events)
            phase = phases[now >= flood_at]
            if kind == "send" and now < end:
                arrival = core.arrive(now)
                for token in arrival.refused:
                    self._refuse(phase, *waiting.pop(token), now)
                if arrival.admitted:
                    self._start(core, client, now, now, at_once=True)
                elif arrival.token is not None:
                    waiting[arrival.token] = (client, now)
                    self.at(now + a.wait_s, f"deadline {arrival.token}", client, now)
                else:
                    self._refuse(phase, client, now, now)
            elif kind.startswith("deadline"):
                token = int(kind.split()[1])
                if token in waiting:
                    core.cancel(token)
                    self._refuse(phase, *waiting.pop(token), now)
            elif kind in ("done", "done at once"):
                if now < end:  # answered while the flood lasts (after it, the line drains)
                    phase.executed += 1
                    phase.latencies.append(now - arrived)
                fed = arrived if self.feed and kind == "done at once" else None
                for token in core.release(now, fed):
                    waiter, came = waiting.pop(token)
                    self._start(core, waiter, came, now, at_once=False)
                self.at(now, "send", client, 0.0)
        return phases

    def _start(
        self, core: Admission, client: int, arrived: float, now: float, at_once: bool
    ) -> None:
        kind = "done at once" if at_once else "done"
        self.at(now + self.service_s(core.in_flight), kind, client, arrived)

    def _refuse(self, phase: Phase, client: int, arrived: float, now: float) -> None:
        phase.refused += 1
        self.at(now, "send", client, 0.0)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--phase-s", type=float, default=15.0)
    p.add_argument("--reference-clients", type=int, default=50)
    p.add_argument("--flood-clients", type=int, default=500)
    p.add_argument("--wait-s", type=float, default=3.0)
    a = p.parse_args()
    print(
        "| shop | slots | 50 clients: executed/s | flood: executed/s (% of 50) "
        "| flood: 503s | flood: admitted p50 / p99 |"
    )
    print("|---|---|---|---|---|---|")
    for name, (base_s, rate) in SHOPS.items():
        for feed, label in ((False, "without"), (True, "with the unqueued time")):
            ref, flood = Run(a, base_s, rate, feed).simulate()
            p50, p99 = (pct(flood.latencies, q) * 1000 for q in (50, 99))
            ref_rate, rate_now = ref.executed / a.phase_s, flood.executed / a.phase_s
            print(
                f"| {name} | {label} | {ref_rate:.1f} | {rate_now:.1f} "
                f"({100 * rate_now / ref_rate:.0f}%) | {flood.refused} | "
                f"{p50:.0f} / {p99:.0f} ms |"
            )


if __name__ == "__main__":
    main()
