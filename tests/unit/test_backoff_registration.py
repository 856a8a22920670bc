from bookstore.backoff import Backoff


def test_registration_backoff_goes_at_once_then_grows_and_goes_at_once_after_a_reset() -> None:
    backoff = Backoff(0.05, 1.0, jitter=0.9, immediate_first=True)
    assert backoff.next() == 0.0
    delays = [backoff.next() for _ in range(50)]
    assert all(0.05 <= d <= 1.0 for d in delays)
    assert max(delays[:3]) <= 0.2  # early attempts stay short
    assert max(delays[-20:]) > 0.1  # late ones grow towards the cap
    backoff.reset()
    assert backoff.next() == 0.0
