from __future__ import annotations

import hashlib
import hmac

from bookstore import cards
from bookstore.settings import get_settings


def test_fingerprint_is_the_hmac_of_the_digits_under_the_configured_key() -> None:
    expected = hmac.new(cards.fingerprint_key(), b"4111111111111111", hashlib.sha256)
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


def test_without_a_configured_key_the_development_key_is_used() -> None:
    assert get_settings().card_fingerprint_key or cards.fingerprint_key() == cards.DEVELOPMENT_KEY


def test_non_ascii_digits_are_not_digits() -> None:
    assert cards.is_digits("4111")
    assert not cards.is_digits("4\u06f0\u06f0")
    assert not cards.is_digits("5\u00b2")
    assert cards.brand_of("5\u00b21111") == "other"
