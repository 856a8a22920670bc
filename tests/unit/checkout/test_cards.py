from __future__ import annotations

import hashlib
import hmac

from bookstore.checkout import cards


def test_fingerprint_is_the_documented_hmac_of_the_digits() -> None:
    expected = hmac.new(b"bookstore-card-fingerprint-v1", b"4111111111111111", hashlib.sha256)
    assert cards.card_fingerprint("4111 1111-1111 1111") == expected.hexdigest()
    assert cards.card_fingerprint("4111111111111111") != cards.card_fingerprint("4000000000000002")


def test_summary_holds_no_full_number() -> None:
    summary = cards.summarize_card("4111 1111 1111 1111", "12/30")
    assert summary.brand == "visa"
    assert summary.bin == "411111"
    assert summary.last4 == "1111"
    assert summary.length == 16
    assert summary.expiration == "12/30"
    assert "4111111111111111" not in str(summary)
    assert cards.summarize_card("", "01/30").fingerprint == ""


def test_brands() -> None:
    assert cards.brand_of("4111111111111111") == "visa"
    assert cards.brand_of("5500000000000004") == "mastercard"
    assert cards.brand_of("2221000000000009") == "mastercard"
    assert cards.brand_of("378282246310005") == "amex"
    assert cards.brand_of("6011111111111117") == "discover"
    assert cards.brand_of("6500000000000002") == "discover"
    assert cards.brand_of("3530111333300000") == "other"
    assert cards.brand_of("") == "other"
