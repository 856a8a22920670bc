import random

from bookstore.order_executor.service import Backoff


def test_backoff_starts_at_once_then_grows_with_jitter_up_to_the_cap() -> None:
    backoff = Backoff(first=0.05, cap=1.0, rng=random.Random(3))
    assert backoff.next_delay() == 0.0
    delays = [backoff.next_delay() for _ in range(200)]
    bounds = [min(1.0, 0.05 * 2**n) for n in range(1, 201)]
    assert all(0.0 <= d <= b for d, b in zip(delays, bounds, strict=True))
    assert max(delays[:3]) <= 0.4  # early attempts stay short
    assert max(delays[-50:]) > 0.5  # late ones reach towards the cap
    assert len(set(delays)) == len(delays)  # jittered, not in lock step


def test_a_reset_backoff_starts_at_once_again() -> None:
    backoff = Backoff(rng=random.Random(1))
    for _ in range(10):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == 0.0
