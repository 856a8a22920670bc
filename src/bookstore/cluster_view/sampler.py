"""Time series for the cluster view's live charts, kept in a ring buffer in-process.

Once a second (the caller's timer) the orchestrator takes a `Snapshot` of its own
metrics and of the ones it scraped from the other services, and `Sampler.record`
turns it, against the previous one, into a `Point`: checkouts per second by outcome,
p50 and p99 checkout latency over the interval, the queue depth, executions per
second by replica, and a leader-change marker when the leader's epoch moved. No
sockets and no clock in here: the caller passes the snapshots and their times.

Counters are cumulative, so a rate is an increase over the interval; a counter that
went down was reset (its process restarted) and its increase is its new value, as
Prometheus' `rate` has it. Quantiles come from the histogram's bucket increases,
interpolated linearly inside a bucket as `histogram_quantile` does.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.metrics_core import Metric

_CHECKOUTS = "bookstore_checkouts"
_LATENCY = "bookstore_checkout_duration_seconds"
_EXECUTIONS = "bookstore_executions"
_QUEUE_DEPTH = "bookstore_queue_depth"
_EPOCH = "bookstore_leader_epoch"
_LEADER = "bookstore_leader_replica"
# The samples a snapshot reads: collecting or scraping only these keeps a snapshot cheap.
SERIES = (
    f"{_CHECKOUTS}_total",
    f"{_LATENCY}_bucket",
    f"{_EXECUTIONS}_total",
    _QUEUE_DEPTH,
    _EPOCH,
    _LEADER,
)


@dataclass(frozen=True)
class Snapshot:
    """Cumulative metric values at time `at` (seconds, any monotonic origin)."""

    at: float
    checkouts: Mapping[str, float] = field(default_factory=dict)  # by outcome
    latency_buckets: Mapping[float, float] = field(default_factory=dict)  # le -> count
    queue_depth: float = 0.0
    executions: Mapping[str, float] = field(default_factory=dict)  # by replica
    leader_epoch: float = 0.0
    leader_replica: float = 0.0


def snapshot_from_metrics(at: float, families: Iterable[Metric]) -> Snapshot:
    """A snapshot from metric families of one or more processes (summed, epoch: max).

    `families` may mix the orchestrator's registry (`REGISTRY.collect()`) and scraped
    expositions (`prometheus_client.parser.text_string_to_metric_families`).
    """
    checkouts: dict[str, float] = {}
    buckets: dict[float, float] = {}
    executions: dict[str, float] = {}
    depth = epoch = leader = 0.0
    for family in families:
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == f"{_CHECKOUTS}_total":
                key = labels["outcome"]
                checkouts[key] = checkouts.get(key, 0.0) + value
            elif name == f"{_LATENCY}_bucket":
                le = float(labels["le"])
                buckets[le] = buckets.get(le, 0.0) + value
            elif name == f"{_EXECUTIONS}_total":
                key = labels["replica"]
                executions[key] = executions.get(key, 0.0) + value
            elif name == _QUEUE_DEPTH:
                depth += value
            elif name == _EPOCH:
                epoch = max(epoch, value)
            elif name == _LEADER:
                # Only the queue, which registers leaders, reports it.
                leader = max(leader, value)
    return Snapshot(at, checkouts, buckets, depth, executions, epoch, leader)


def _increase(before: float, after: float) -> float:
    return after - before if after >= before else after


def _increases(before: Mapping[Any, float], after: Mapping[Any, float]) -> dict[Any, float]:
    return {key: _increase(before.get(key, 0.0), value) for key, value in after.items()}


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The q-quantile of a cumulative histogram {upper bound: count}; None if empty.

    As Prometheus: linear interpolation inside the bucket holding the rank (the
    first bucket starts at 0); a rank in the +Inf bucket answers the highest finite
    bound.
    """
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    total = buckets[bounds[-1]]
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank and count > below:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


@dataclass(frozen=True)
class LeaderChange:
    epoch: int
    replica: int  # 0: no leader registered


@dataclass(frozen=True)
class Point:
    """One interval of the live charts, ending at `at`."""

    at: float
    checkouts_per_s: Mapping[str, float]  # by outcome
    latency_p50_s: float | None  # None: no checkout finished in the interval
    latency_p99_s: float | None
    queue_depth: float
    executions_per_s: Mapping[str, float]  # by replica
    leader_change: LeaderChange | None

    def as_json(self) -> dict[str, Any]:
        change = self.leader_change
        return {
            "at": self.at,
            "checkoutsPerS": dict(self.checkouts_per_s),
            "latencyP50S": self.latency_p50_s,
            "latencyP99S": self.latency_p99_s,
            "queueDepth": self.queue_depth,
            "executionsPerS": dict(self.executions_per_s),
            "leaderChange": None
            if change is None
            else {"epoch": change.epoch, "replica": change.replica},
        }


def point_between(before: Snapshot, after: Snapshot) -> Point:
    """The interval from `before` to `after` as a chart point."""
    seconds = after.at - before.at
    if seconds <= 0:
        raise ValueError(f"snapshots out of order: {before.at} then {after.at}")
    latency = _increases(before.latency_buckets, after.latency_buckets)
    leader_moved = (after.leader_epoch, after.leader_replica) != (
        before.leader_epoch,
        before.leader_replica,
    )
    return Point(
        at=after.at,
        checkouts_per_s={
            k: v / seconds for k, v in _increases(before.checkouts, after.checkouts).items()
        },
        latency_p50_s=histogram_quantile(0.5, latency),
        latency_p99_s=histogram_quantile(0.99, latency),
        queue_depth=after.queue_depth,
        executions_per_s={
            k: v / seconds for k, v in _increases(before.executions, after.executions).items()
        },
        leader_change=LeaderChange(int(after.leader_epoch), int(after.leader_replica))
        if leader_moved
        else None,
    )


class Sampler:
    """The last `capacity` points (default: 5 minutes at one snapshot a second)."""

    def __init__(self, capacity: int = 300) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._points: deque[Point] = deque(maxlen=capacity)
        self._last: Snapshot | None = None

    def record(self, snapshot: Snapshot) -> Point | None:
        """Add the interval since the previous snapshot; the first gives no point.

        A snapshot not later than the previous one is ignored (None).
        """
        last, self._last = self._last, snapshot
        if last is None:
            return None
        if snapshot.at <= last.at:
            self._last = last
            return None
        point = point_between(last, snapshot)
        self._points.append(point)
        return point

    def points(self) -> Sequence[Point]:
        """The kept points, oldest first."""
        return tuple(self._points)

    def as_json(self) -> list[dict[str, Any]]:
        return [point.as_json() for point in self._points]
