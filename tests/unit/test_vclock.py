from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bookstore import vclock

clocks = st.tuples(*(st.integers(min_value=0, max_value=50) for _ in range(vclock.SIZE)))


@given(clocks, clocks)
def test_merge_is_commutative(a: vclock.Clock, b: vclock.Clock) -> None:
    assert vclock.merge(a, b) == vclock.merge(b, a)


@given(clocks, clocks, clocks)
def test_merge_is_associative(a: vclock.Clock, b: vclock.Clock, c: vclock.Clock) -> None:
    assert vclock.merge(vclock.merge(a, b), c) == vclock.merge(a, vclock.merge(b, c))


@given(clocks)
def test_merge_is_idempotent(a: vclock.Clock) -> None:
    assert vclock.merge(a, a) == a


@given(clocks, clocks)
def test_merge_is_the_least_upper_bound(a: vclock.Clock, b: vclock.Clock) -> None:
    m = vclock.merge(a, b)
    assert vclock.leq(a, m) and vclock.leq(b, m)


@given(clocks)
def test_leq_is_reflexive(a: vclock.Clock) -> None:
    assert vclock.leq(a, a)


@given(clocks, clocks)
def test_leq_is_antisymmetric(a: vclock.Clock, b: vclock.Clock) -> None:
    if vclock.leq(a, b) and vclock.leq(b, a):
        assert a == b


@given(clocks, clocks, clocks)
def test_leq_is_transitive(a: vclock.Clock, b: vclock.Clock, c: vclock.Clock) -> None:
    lo, mid = vclock.merge(vclock.ZERO, a), vclock.merge(a, b)
    hi = vclock.merge(mid, c)
    assert vclock.leq(lo, mid) and vclock.leq(mid, hi)
    assert vclock.leq(lo, hi)
    if vclock.leq(a, b) and vclock.leq(b, c):
        assert vclock.leq(a, c)


@given(clocks, st.sampled_from(["transaction-verification", "fraud-detection", "suggestions"]))
def test_tick_happens_after(a: vclock.Clock, service: str) -> None:
    ticked = vclock.tick(a, service)
    assert vclock.happened_before(a, ticked)
    assert sum(ticked) == sum(a) + 1


def test_pb_round_trip() -> None:
    assert vclock.from_pb(vclock.to_pb((3, 2, 1))) == (3, 2, 1)
    assert vclock.fmt((3, 2, 1)) == "[3,2,1]"
