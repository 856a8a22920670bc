"""Deterministic fraud rules, and the judge interface the service calls.

Each rule adds to a score in 0..1 (capped at 1); an order is fraud when its
score reaches FRAUD_THRESHOLD (0.7). The reason shown is the strongest rule's.

User data (event d):
- U1 throw-away email: the contact's domain is in DISPOSABLE_DOMAINS -> +0.8.
- U2 implausible quantity: more than MAX_BOOKS (50) books in total -> +0.8.
- U3 implausible total: more than MAX_TOTAL (2000.00) at catalogue prices -> +0.8.
- U4 bogus name: a name of digits only, or containing a URL -> +0.8.
- U5 language mismatch: the device language's region (e.g. "et-EE") names a
  country other than the billing country -> +0.2 only (never fraud alone).

Card (event e), from the CardSummary (no full number ever reaches this service):
- C1 deny list: the card's fingerprint (HMAC-SHA256, see checkout.cards) is in
  DENIED_CARDS -> +1.0. Listed: 4000000000000002 (declined test card),
  4100000000000019 (always-fraud test card), 5105105105105100 (stolen
  Mastercard test number).
- C2 BIN country: the BIN's issuing country (BIN_COUNTRIES, a small table) is
  not the billing country -> +0.5.
- C3 prepaid card and a high total: a prepaid BIN (PREPAID_BINS) and a total
  above PREPAID_LIMIT (300.00) -> +0.5.
- C4 many copies: more than MAX_SAME_BOOK (20) copies of one book (added up
  over the order's lines) paid by a prepaid card -> +0.3.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Protocol

from bookstore.ai.budget import AiBudget
from bookstore.cards import card_fingerprint
from bookstore.catalogue import Catalogue, load_catalogue
from bookstore.pb import checkout_pb2

FRAUD_THRESHOLD = 0.7
MAX_BOOKS = 50
MAX_TOTAL = 2000.0
PREPAID_LIMIT = 300.0
MAX_SAME_BOOK = 20

DISPOSABLE_DOMAINS = frozenset(
    {
        "mailinator.com",
        "guerrillamail.com",
        "10minutemail.com",
        "tempmail.com",
        "temp-mail.org",
        "yopmail.com",
        "trashmail.com",
        "sharklasers.com",
        "getnada.com",
        "dispostable.com",
    }
)
DENIED_CARDS: dict[str, str] = {
    "4000000000000002": "declined test card",
    "4100000000000019": "always-fraud test card",
    "5105105105105100": "stolen test card",
}


@cache
def denied_fingerprints() -> dict[str, str]:
    """DENIED_CARDS by fingerprint, under this deployment's key (computed once)."""
    return {card_fingerprint(number): why for number, why in DENIED_CARDS.items()}


# First six digits -> ISO country of the issuer (a small sample table).
BIN_COUNTRIES: dict[str, str] = {
    "411111": "US",
    "424242": "US",
    "400000": "US",
    "555555": "US",
    "510510": "US",
    "378282": "US",
    "601111": "US",
    "450875": "EE",
    "516840": "EE",
    "492942": "GB",
    "535110": "DE",
    "497010": "FR",
    "453978": "FI",
    "404117": "RU",
}
PREPAID_BINS = frozenset({"400000", "530125", "453978"})
# Billing country as people type it -> ISO code (the ISO code itself also works).
COUNTRY_CODES: dict[str, str] = {
    "united states": "US",
    "usa": "US",
    "united states of america": "US",
    "estonia": "EE",
    "eesti": "EE",
    "united kingdom": "GB",
    "uk": "GB",
    "great britain": "GB",
    "germany": "DE",
    "deutschland": "DE",
    "france": "FR",
    "finland": "FI",
    "suomi": "FI",
    "russia": "RU",
    "latvia": "LV",
    "lithuania": "LT",
    "sweden": "SE",
}
_URL = re.compile(r"(https?://|www\.|\.(com|net|org|ru|io)\b)", re.IGNORECASE)


@dataclass(frozen=True)
class Verdict:
    fraud: bool
    score: float  # 0..1
    reason: str  # customer-readable, when fraud
    answered_by: str  # "rules" | "ai" | "fallback: <why>"


class FraudJudge(Protocol):
    async def check_user(self, order: checkout_pb2.OrderData, budget: AiBudget) -> Verdict: ...

    async def check_card(self, order: checkout_pb2.OrderData, budget: AiBudget) -> Verdict: ...


def country_code(country: str) -> str:
    """ISO 3166 alpha-2 code of a billing country, "" when not recognised."""
    text = " ".join(country.split()).casefold()
    if len(text) == 2 and text.isalpha():
        return text.upper()
    return COUNTRY_CODES.get(text, "")


def order_total(order: checkout_pb2.OrderData, catalogue: Catalogue) -> float:
    total = 0.0
    for item in order.items:
        book = catalogue.resolve(item.book_id, item.title)
        if book is not None and item.quantity > 0:
            total += book.price * item.quantity
    return total


def copies_per_book(order: checkout_pb2.OrderData, catalogue: Catalogue) -> dict[str, int]:
    """Copies of each book, added up over the order's lines (one book may fill several)."""
    copies: dict[str, int] = {}
    for item in order.items:
        book = catalogue.resolve(item.book_id, item.title)
        key = book.book_id if book is not None else item.book_id or item.title.casefold()
        copies[key] = copies.get(key, 0) + max(0, item.quantity)
    return copies


def _verdict(hits: list[tuple[float, str]]) -> Verdict:
    score = min(1.0, sum(weight for weight, _ in hits))
    fraud = score >= FRAUD_THRESHOLD
    reason = max(hits)[1] if fraud and hits else ""
    return Verdict(fraud=fraud, score=round(score, 3), reason=reason, answered_by="rules")


class RulesJudge:
    """The documented rules above; deterministic, no I/O."""

    def __init__(self, catalogue: Catalogue | None = None) -> None:
        self.catalogue = catalogue or load_catalogue()

    def user_verdict(self, order: checkout_pb2.OrderData) -> Verdict:
        hits: list[tuple[float, str]] = []
        contact = order.customer.contact.strip().casefold()
        domain = contact.rpartition("@")[2] if "@" in contact else ""
        if domain in DISPOSABLE_DOMAINS:
            hits.append((0.8, "Please use a permanent email address, not a throw-away one."))
        books = sum(max(0, item.quantity) for item in order.items)
        if books > MAX_BOOKS:
            hits.append((0.8, f"Orders of more than {MAX_BOOKS} books need to be placed by phone."))
        if order_total(order, self.catalogue) > MAX_TOTAL:
            hits.append((0.8, f"Orders above {MAX_TOTAL:.0f} need to be placed by phone."))
        name = order.customer.name.strip()
        if name and (name.replace(" ", "").isdigit() or _URL.search(name)):
            hits.append((0.8, "The name on the order does not look like a person's name."))
        billing = country_code(order.billing_address.country)
        _, _, region = order.client.device_language.replace("_", "-").partition("-")
        if billing and len(region) == 2 and region.upper() != billing:
            hits.append((0.2, "The device's region does not match the billing country."))
        return _verdict(hits)

    def card_verdict(self, order: checkout_pb2.OrderData) -> Verdict:
        card = order.card_summary
        hits: list[tuple[float, str]] = []
        denied = denied_fingerprints().get(card.fingerprint) if card.fingerprint else None
        if denied is not None:
            hits.append((1.0, "This card was declined. Please use another card."))
        billing = country_code(order.billing_address.country)
        issuer = BIN_COUNTRIES.get(card.bin, "")
        if billing and issuer and issuer != billing:
            hits.append(
                (0.5, "The card was issued in a different country than the billing address.")
            )
        if card.bin in PREPAID_BINS:
            if order_total(order, self.catalogue) > PREPAID_LIMIT:
                hits.append((0.5, "Prepaid cards cannot pay for orders this large."))
            if max(copies_per_book(order, self.catalogue).values(), default=0) > MAX_SAME_BOOK:
                hits.append((0.3, "Prepaid cards cannot pay for this many copies of one book."))
        return _verdict(hits)

    async def check_user(self, order: checkout_pb2.OrderData, budget: AiBudget) -> Verdict:
        return self.user_verdict(order)

    async def check_card(self, order: checkout_pb2.OrderData, budget: AiBudget) -> Verdict:
        return self.card_verdict(order)
