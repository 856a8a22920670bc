"""The three checks of transaction verification, as pure functions.

Each returns "" when the order passes, else a reason a customer understands.
No reason ever holds more of a card number than its last four digits, nor
the CVV.

- a (items): at least one item; every quantity positive; every book known in
  the catalogue (by id, else by title); the reason names an unknown title, cut
  to its first 60 characters (an attacker's megabyte is not echoed).
- b (user data): name, contact, billing street, city, zip and country present;
  terms accepted.
- c (card): digits only once spaces and dashes are removed; Luhn checksum;
  length by brand (Visa 13/16/19, Mastercard 16, Amex 15, Discover 16-19,
  other 12-19); expiry MM/YY valid to the end of its month and not past;
  CVV 3 digits (4 for Amex).
"""

from __future__ import annotations

from datetime import UTC, datetime

from bookstore.cards import brand_of, digits_of, is_digits
from bookstore.catalogue import Catalogue
from bookstore.pb import checkout_pb2

LENGTHS: dict[str, frozenset[int]] = {
    "visa": frozenset({13, 16, 19}),
    "mastercard": frozenset({16}),
    "amex": frozenset({15}),
    "discover": frozenset(range(16, 20)),
    "other": frozenset(range(12, 20)),
}
BRAND_NAMES = {
    "visa": "Visa",
    "mastercard": "Mastercard",
    "amex": "American Express",
    "discover": "Discover",
    "other": "card",
}


LABEL_CHARS = 60  # most characters of a title a reason repeats


def shorten(text: str, limit: int = LABEL_CHARS) -> str:
    """`text`, cut to `limit` characters with an ellipsis when longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_items(order: checkout_pb2.OrderData, catalogue: Catalogue) -> str:
    """Event a."""
    if not order.items:
        return "The order has no items."
    for item in order.items:
        label = shorten(item.title.strip() or item.book_id.strip() or "an item")
        if item.quantity <= 0:
            return f"The quantity of {label!r} must be at least 1."
        if catalogue.resolve(item.book_id, item.title) is None:
            return f"We do not sell a book called {label!r}."
    return ""


def check_user_data(order: checkout_pb2.OrderData) -> str:
    """Event b."""
    missing: list[str] = []
    if not order.customer.name.strip():
        missing.append("your name")
    if not order.customer.contact.strip():
        missing.append("your contact")
    address = order.billing_address
    for label, value in (
        ("the billing street", address.street),
        ("the billing city", address.city),
        ("the billing zip code", address.zip),
        ("the billing country", address.country),
    ):
        if not value.strip():
            missing.append(label)
    if missing:
        return "Please provide " + _join(missing) + "."
    if not order.terms_accepted:
        return "Please accept the terms and conditions."
    return ""


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) checksum of a string of digits."""
    if not is_digits(digits):
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def parse_expiry(expiry: str) -> tuple[int, int] | None:
    """(year, month) of an "MM/YY" expiry, or None when malformed."""
    month_s, sep, year_s = expiry.strip().partition("/")
    month_s, year_s = month_s.strip(), year_s.strip()
    if not sep or not (is_digits(month_s) and is_digits(year_s)):
        return None
    if len(month_s) not in (1, 2) or len(year_s) not in (2, 4):
        return None
    month, year = int(month_s), int(year_s)
    if not 1 <= month <= 12:
        return None
    return (2000 + year if year < 100 else year), month


def expired(year: int, month: int, now: datetime) -> bool:
    """A card is valid to the last moment of its expiry month."""
    return (now.year, now.month) > (year, month)


def check_card(card: checkout_pb2.Card, now: datetime | None = None) -> str:
    """Event c. `now` (UTC) is injectable for tests."""
    digits = digits_of(card.number)
    if not digits:
        return "Please provide a card number."
    if not is_digits(digits):
        return "The card number may contain only digits."
    brand = brand_of(digits)
    if len(digits) not in LENGTHS[brand] or not luhn_ok(digits):
        return "The card number is not valid."
    parsed = parse_expiry(card.expiration)
    if parsed is None:
        return "The card's expiry date must look like MM/YY."
    year, month = parsed
    if expired(year, month, now or datetime.now(UTC)):
        return f"The card expired in {month:02d}/{year % 100:02d}."
    cvv = card.cvv.strip()
    want = 4 if brand == "amex" else 3
    if len(cvv) != want or not is_digits(cvv):
        return f"The security code (CVV) of a {BRAND_NAMES[brand]} card has {want} digits."
    return ""


def _join(parts: list[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]
