"""The live charts' time series: rates, quantiles, leader markers, the ring buffer."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bookstore.cluster_view.sampler import (
    LeaderChange,
    Sampler,
    Snapshot,
    histogram_quantile,
    point_between,
    snapshot_from_metrics,
)


def test_rates_are_increases_per_second() -> None:
    before = Snapshot(10.0, checkouts={"approved": 5, "rejected": 1}, executions={"4": 5})
    after = Snapshot(12.0, checkouts={"approved": 25, "rejected": 3}, executions={"4": 23})
    point = point_between(before, after)
    assert point.checkouts_per_s == {"approved": 10.0, "rejected": 1.0}
    assert point.executions_per_s == {"4": 9.0}


def test_a_counter_that_went_down_was_reset() -> None:
    point = point_between(Snapshot(0.0, executions={"3": 100}), Snapshot(1.0, executions={"3": 7}))
    assert point.executions_per_s == {"3": 7.0}


def test_quantiles_interpolate_inside_the_bucket() -> None:
    # 100 observations: 50 <= 0.01 s, 40 in (0.01, 0.05], 10 in (0.05, 0.1].
    buckets = {0.01: 50, 0.05: 90, 0.1: 100, math.inf: 100}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.01)
    assert histogram_quantile(0.7, buckets) == pytest.approx(0.03)
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.095)
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.005)


def test_a_rank_past_the_last_bound_answers_the_highest_finite_bound() -> None:
    assert histogram_quantile(0.99, {0.1: 1, 1.0: 1, math.inf: 10}) == 1.0


def test_no_observations_give_no_quantile() -> None:
    assert histogram_quantile(0.5, {}) is None
    assert histogram_quantile(0.5, {0.1: 0, math.inf: 0}) is None


@given(
    st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=8),
    st.floats(min_value=0.0, max_value=1.0),
)
def test_a_quantile_lies_within_the_bucket_bounds(counts: list[int], q: float) -> None:
    bounds = [0.001 * 2**i for i in range(len(counts))]
    cumulative, total = {}, 0
    for bound, count in zip(bounds, counts, strict=True):
        total += count
        cumulative[bound] = float(total)
    cumulative[math.inf] = float(total)
    value = histogram_quantile(q, cumulative)
    if total == 0:
        assert value is None
    else:
        assert value is not None and 0.0 <= value <= bounds[-1]


def test_latency_quantiles_are_over_the_interval_only() -> None:
    before = Snapshot(0.0, latency_buckets={0.01: 1000, 0.1: 1000, math.inf: 1000})
    after = Snapshot(1.0, latency_buckets={0.01: 1000, 0.1: 1010, math.inf: 1010})
    point = point_between(before, after)
    assert point.latency_p50_s is not None and 0.01 < point.latency_p50_s <= 0.1
    idle = point_between(after, Snapshot(2.0, latency_buckets=after.latency_buckets))
    assert idle.latency_p50_s is None and idle.latency_p99_s is None


def test_a_leader_change_is_marked_once() -> None:
    sampler = Sampler()
    for at, epoch, leader in [(0, 1, 4), (1, 1, 4), (2, 2, 3), (3, 2, 3)]:
        sampler.record(Snapshot(float(at), leader_epoch=epoch, leader_replica=leader))
    markers = [p.leader_change for p in sampler.points()]
    assert markers == [None, LeaderChange(epoch=2, replica=3), None]


def test_the_ring_buffer_keeps_the_last_points() -> None:
    sampler = Sampler(capacity=3)
    assert sampler.record(Snapshot(0.0)) is None  # the first snapshot is the baseline
    for at in range(1, 6):
        sampler.record(Snapshot(float(at), queue_depth=at))
    assert [p.at for p in sampler.points()] == [3.0, 4.0, 5.0]
    assert [p["queueDepth"] for p in sampler.as_json()] == [3, 4, 5]


def test_a_snapshot_out_of_order_is_ignored() -> None:
    sampler = Sampler()
    sampler.record(Snapshot(5.0, checkouts={"approved": 1}))
    assert sampler.record(Snapshot(4.0, checkouts={"approved": 9})) is None
    point = sampler.record(Snapshot(6.0, checkouts={"approved": 3}))
    assert point is not None and point.checkouts_per_s == {"approved": 2.0}
    with pytest.raises(ValueError, match="out of order"):
        point_between(Snapshot(2.0), Snapshot(2.0))


def test_a_point_as_json() -> None:
    point = point_between(
        Snapshot(0.0), Snapshot(1.0, queue_depth=2, leader_epoch=1, leader_replica=4)
    )
    assert point.as_json() == {
        "at": 1.0,
        "checkoutsPerS": {},
        "latencyP50S": None,
        "latencyP99S": None,
        "queueDepth": 2,
        "executionsPerS": {},
        "leaderChange": {"epoch": 1, "replica": 4},
    }


def test_snapshots_combine_the_orchestrator_and_scraped_services() -> None:
    orchestrator = CollectorRegistry()
    checkouts = Counter("bookstore_checkouts", "", ["outcome"], registry=orchestrator)
    checkouts.labels("approved").inc(7)
    latency = Histogram(
        "bookstore_checkout_duration_seconds", "", buckets=(0.01, 0.1), registry=orchestrator
    )
    latency.observe(0.005)
    latency.observe(0.05)
    queue = CollectorRegistry()
    Gauge("bookstore_queue_depth", "", registry=queue).set(3)
    Gauge("bookstore_leader_epoch", "", registry=queue).set(5)
    Gauge("bookstore_leader_replica", "", registry=queue).set(2)
    executions = Counter("bookstore_executions", "", ["replica"], registry=queue)
    executions.labels("2").inc(4)
    executions.labels("4").inc(6)
    executor = CollectorRegistry()
    Gauge("bookstore_leader_epoch", "", registry=executor).set(4)  # a stale view
    scraped = [
        family
        for registry in (queue, executor)
        for family in text_string_to_metric_families(generate_latest(registry).decode())
    ]
    snapshot = snapshot_from_metrics(1.5, [*orchestrator.collect(), *scraped])
    assert snapshot == Snapshot(
        at=1.5,
        checkouts={"approved": 7.0},
        latency_buckets={0.01: 1.0, 0.1: 2.0, math.inf: 2.0},
        queue_depth=3.0,
        executions={"2": 4.0, "4": 6.0},
        leader_epoch=5.0,
        leader_replica=2.0,
    )
