"""Card helpers shared by the orchestrator and the checkout services.

The orchestrator sends the full card only to transaction verification; fraud
detection gets a `CardSummary` made here: brand, BIN (first six digits), last
four, expiry, length and a keyed fingerprint. The fingerprint is
HMAC-SHA256(key, digits) in hex: the same in every process that shares the key
(CARD_FINGERPRINT_KEY), so a deny list can name a card without its number. The
key must stay secret: BIN, last four and a fingerprint under a known key leave
only about 10^5 candidates for a 16-digit number, which is quickly searched.
Without CARD_FINGERPRINT_KEY a public development key is used (and the services
say so at start-up); `bookstore up` gives every run a random key.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from bookstore.pb import checkout_pb2
from bookstore.settings import get_settings

log = logging.getLogger(__name__)

DEVELOPMENT_KEY = b"bookstore-card-fingerprint-v1"


def fingerprint_key() -> bytes:
    """CARD_FINGERPRINT_KEY, or the public development key when it is not set."""
    key = get_settings().card_fingerprint_key
    return key.encode() if key else DEVELOPMENT_KEY


def warn_if_development_key() -> None:
    """One start-up line for the services that compute or match fingerprints."""
    if fingerprint_key() == DEVELOPMENT_KEY:
        log.warning(
            "CARD_FINGERPRINT_KEY is not set: card fingerprints use the public development key"
        )


def is_digits(text: str) -> bool:
    """Only the ASCII digits 0-9 ("٠" and "²" are digits to str.isdigit, not here)."""
    return text.isascii() and text.isdigit()


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
    return int(head) if is_digits(head) and len(head) == n else -1


def card_fingerprint(number: str) -> str:
    """HMAC-SHA256 of the card's digits with the fingerprint key, hex."""
    return hmac.new(fingerprint_key(), digits_of(number).encode(), hashlib.sha256).hexdigest()


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
