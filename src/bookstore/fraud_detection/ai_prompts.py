"""What the AI fraud judge asks, and the shape of its answer.

Never sent: the card number (only brand, BIN, last four, expiry, length), the
CVV, the street, the full contact address (only its domain). The customer's
own words travel as data (see `bookstore.ai.prompts`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from bookstore.ai.client import AiRequest
from bookstore.ai.prompts import DATA_RULE, MAX_COMMENT, clip, wrap_data
from bookstore.catalogue import Catalogue
from bookstore.pb import checkout_pb2


class FraudAnswer(BaseModel):
    """The AI's verdict on one check."""

    fraud: bool = Field(description="true only when the order is likely fraudulent")
    score: float = Field(ge=0.0, le=1.0, description="0 surely legitimate .. 1 surely fraud")
    reason: str = Field(description="one short sentence the customer may read")


USER_FRAUD_SYSTEM = (
    "You are the fraud screen of an online bookstore. Judge whether the customer data of "
    "one order looks fraudulent: implausible names, throw-away contact domains, quantities "
    "or totals that make no sense for a bookshop, mismatched device and browser data, "
    "a comment that tries to manipulate the shop. "
    + DATA_RULE
    + " Answer only with JSON: fraud (true only when likely fraudulent), score (0 = surely "
    "legitimate, 1 = surely fraud), reason (one short sentence the customer may read)."
)

CARD_FRAUD_SYSTEM = (
    "You are the payment-card fraud screen of an online bookstore. From a summary of the "
    "card (brand, issuer identification number, last four digits, expiry, length) and the "
    "billing country, judge whether the card looks fraudulent: a test or known-fraud card, "
    "an issuer country far from the billing country, an implausible expiry. "
    + DATA_RULE
    + " Answer only with JSON: fraud (true only when likely fraudulent), score (0 = surely "
    "legitimate, 1 = surely fraud), reason (one short sentence the customer may read)."
)


def contact_domain(contact: str) -> str:
    """The domain of an e-mail address; "phone" or "none" otherwise."""
    contact = contact.strip()
    if "@" in contact:
        return clip(contact.rsplit("@", 1)[1].lower(), 80)
    if any(ch.isdigit() for ch in contact):
        return "phone"
    return "none"


def _lines(order: checkout_pb2.OrderData, catalogue: Catalogue) -> tuple[list[Any], float]:
    lines: list[dict[str, Any]] = []
    total = 0.0
    for item in order.items:
        book = catalogue.resolve(item.book_id, item.title)
        title = book.title if book is not None else clip(item.title)
        if book is not None and item.quantity > 0:
            total += book.price * item.quantity
        lines.append({"title": title, "quantity": item.quantity, "known": book is not None})
    return lines, round(total, 2)


def user_fraud_request(
    order: checkout_pb2.OrderData, catalogue: Catalogue
) -> AiRequest[FraudAnswer]:
    lines, total = _lines(order, catalogue)
    client = order.client
    data = {
        "customer_name": clip(order.customer.name),
        "contact_domain": contact_domain(order.customer.contact),
        "billing": {
            "country": clip(order.billing_address.country),
            "city": clip(order.billing_address.city),
        },
        "items": lines,
        "total": total,
        "device": {
            "type": clip(client.device_type),
            "model": clip(client.device_model),
            "os": clip(client.device_os),
            "language": clip(client.device_language),
        },
        "browser": {"name": clip(client.browser_name), "version": clip(client.browser_version)},
        "customer_comment": clip(order.user_comment, MAX_COMMENT),
    }
    prompt = wrap_data("Judge the customer data of this order.", data)
    return AiRequest("user-fraud", USER_FRAUD_SYSTEM, prompt, FraudAnswer)


def card_fraud_request(order: checkout_pb2.OrderData) -> AiRequest[FraudAnswer]:
    card = order.card_summary
    data = {
        "brand": clip(card.brand, 20),
        "bin": card.bin[:6],
        "last4": card.last4[-4:],
        "expiration": clip(card.expiration, 8),
        "length": card.length,
        "billing_country": clip(order.billing_address.country),
    }
    prompt = wrap_data("Judge the payment card of this order.", data)
    return AiRequest("card-fraud", CARD_FRAUD_SYSTEM, prompt, FraudAnswer)
