"""Card helpers shared by the orchestrator and the checkout services.

The orchestrator sends the full card only to transaction verification; fraud
detection gets a `CardSummary` made here: brand, BIN (first six digits), last
four, expiry, length and a keyed fingerprint. The fingerprint is
HMAC-SHA256(FINGERPRINT_KEY, digits) in hex: stable across processes, so deny
lists can name a card without storing its number. The key is fixed and
documented on purpose (it is a lookup key, not a secret protecting the card).
"""

from __future__ import annotations

import hashlib
import hmac

from bookstore.pb import checkout_pb2

FINGERPRINT_KEY = b"bookstore-card-fingerprint-v1"


def digits_of(number: str) -> str:
    """The number without spaces and dashes (other characters are kept)."""
    return number.replace(" ", "").replace("-", "")


def brand_of(digits: str) -> str:
    """ "visa", "mastercard", "amex", "discover" or "other", by prefix."""
    if digits.startswith("4"):
        return "visa"
    if digits[:2] in ("34", "37"):
        return "amex"
    if len(digits) >= 2 and 51 <= _prefix(digits, 2) <= 55:
        return "mastercard"
    if len(digits) >= 4 and 2221 <= _prefix(digits, 4) <= 2720:
        return "mastercard"
    if digits.startswith(("6011", "65")) or 644 <= _prefix(digits, 3) <= 649:
        return "discover"
    return "other"


def _prefix(digits: str, n: int) -> int:
    head = digits[:n]
    return int(head) if head.isdigit() and len(head) == n else -1


def card_fingerprint(number: str) -> str:
    """HMAC-SHA256 of the card's digits with FINGERPRINT_KEY, hex."""
    return hmac.new(FINGERPRINT_KEY, digits_of(number).encode(), hashlib.sha256).hexdigest()


def last4(number: str) -> str:
    return digits_of(number)[-4:]


def summarize_card(number: str, expiry: str) -> checkout_pb2.CardSummary:
    """What fraud detection may know about a card: never the full number or the CVV."""
    digits = digits_of(number)
    if not digits:
        return checkout_pb2.CardSummary(expiration=expiry)
    return checkout_pb2.CardSummary(
        brand=brand_of(digits),
        bin=digits[:6] if len(digits) >= 12 else "",
        last4=digits[-4:],
        expiration=expiry,
        fingerprint=card_fingerprint(digits),
        length=len(digits),
    )
