"""Checkout request bodies shared by the end-to-end tests and the benchmark."""

from __future__ import annotations

import copy
import re
from typing import Any

CARD = "4111111111111111"
CVV = "947"  # not the course page's 123: a 3-digit token rare enough to search logs for


def card_secrets_in(text: str, card: str = CARD, cvv: str = CVV) -> list[str]:
    """The card number, and the CVV as a token of its own, wherever they occur in text.

    A bare substring search for three digits would also find them inside a random
    order id, a timestamp or a longer number, so the CVV counts only standing alone.
    """
    found = [card] if card in text else []
    token = re.compile(rf"(?<![\w.:-]){cvv}(?![\w:-])")
    found += [match.group() for match in token.finditer(text)]
    return found


def course_page_request(**changes: Any) -> dict[str, Any]:
    """The course page's default form with a future expiry (as the page sends it)."""
    body: dict[str, Any] = {
        "user": {"name": "John Doe", "contact": "john.doe@example.com"},
        "creditCard": {"number": CARD, "expirationDate": "12/39", "cvv": CVV},
        "userComment": "Please handle with care.",
        "items": [{"name": "Book A", "quantity": 1}, {"name": "Book B", "quantity": 2}],
        "billingAddress": {
            "street": "123 Main St",
            "city": "Springfield",
            "state": "IL",
            "zip": "62701",
            "country": "USA",
        },
        "shippingMethod": "Standard",
        "giftWrapping": True,
        "termsAccepted": True,
    }
    body.update(copy.deepcopy(changes))
    return body


def full_spec_request() -> dict[str, Any]:
    """Every field of the course spec's CheckoutRequest."""
    return {
        "user": {"name": "Grace Hopper", "contact": "grace@example.org"},
        "creditCard": {"number": CARD, "expirationDate": "08/38", "cvv": CVV},
        "userComment": "Gift for a colleague",
        "items": [
            {"name": "Designing Data-Intensive Applications", "quantity": 1},
            {"name": "Book A", "quantity": 3},
        ],
        "discountCode": "SPRING",
        "shippingMethod": "Express",
        "giftMessage": "Enjoy!",
        "billingAddress": {
            "street": "1 Infinite Loop",
            "city": "Cupertino",
            "state": "CA",
            "zip": "95014",
            "country": "USA",
        },
        "giftWrapping": False,
        "termsAndConditionsAccepted": True,
        "notificationPreferences": ["email", "sms"],
        "device": {"type": "Smartphone", "model": "Pixel 8", "os": "Android 15"},
        "browser": {"name": "Chrome", "version": "131"},
        "appVersion": "3.2.1",
        "screenResolution": "1080x2400",
        "referrer": "https://example.org",
        "deviceLanguage": "en-US",
    }
