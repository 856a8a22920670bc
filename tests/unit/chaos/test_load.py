"""The load generator's orders and its audit arithmetic."""

from __future__ import annotations

from bookstore.chaos.load import longest_gap, order_body


def test_the_orders_mix_approved_and_rejected_small_and_large() -> None:
    bodies = [order_body(n) for n in range(12)]
    expired = [b for b in bodies if b["creditCard"]["expirationDate"] == "01/20"]
    large = [b for b in bodies if sum(i["quantity"] for i in b["items"]) > 1]
    assert len(expired) == 3 and len(large) == 4
    assert all(b["termsAccepted"] for b in bodies)


def test_longest_gap_counts_from_the_start_and_between_executions() -> None:
    start = 1_000_000.0
    at = ["1970-01-12T13:46:41+00:00", "1970-01-12T13:46:44.500000+00:00"]  # start+1, start+4.5
    assert longest_gap(start, at) == 3.5
    assert longest_gap(start, []) == 0.0
