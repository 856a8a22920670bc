"""What the processor keeps of a card, and how its test cards behave.

The card is checked like transaction verification's event c (Luhn, length by
brand, expiry, CVV); what is kept is its brand, last four, expiry and test
behaviour. The number and the CVV stay in the caller's memory.

Test cards, the way card processors' test numbers behave (README, "Test cards"):

| number              | behaviour                                          |
|---------------------|----------------------------------------------------|
| 4000 0000 0000 0002 | always declined: "card declined"                   |
| 4000 0000 0000 9995 | always declined: "insufficient funds"              |
| 4000 0000 0000 0119 | the processor does not answer: DEADLINE_EXCEEDED    |
| any other valid card | authorized                                        |
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bookstore.cards import brand_of, digits_of
from bookstore.pb import checkout_pb2
from bookstore.transaction_verification.checks import check_card


class Behaviour(StrEnum):
    APPROVE = "approve"
    DECLINE = "decline"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    TIMEOUT = "timeout"


TEST_CARDS = {
    "4000000000000002": Behaviour.DECLINE,
    "4000000000009995": Behaviour.INSUFFICIENT_FUNDS,
    "4000000000000119": Behaviour.TIMEOUT,
}
DECLINE_REASONS = {
    Behaviour.DECLINE: "card declined",
    Behaviour.INSUFFICIENT_FUNDS: "insufficient funds",
}


class BadCard(ValueError):
    """The card is not valid; the message is the customer's reason (no digits but the last four)."""


@dataclass(frozen=True)
class CardInfo:
    brand: str
    last4: str
    expiration: str
    behaviour: Behaviour


def card_info(number: str, expiration: str, cvv: str) -> CardInfo:
    """What the ledger may keep of a valid card, or BadCard."""
    problem = check_card(checkout_pb2.Card(number=number, expiration=expiration, cvv=cvv))
    if problem:
        raise BadCard(problem)
    digits = digits_of(number)
    behaviour = TEST_CARDS.get(digits, Behaviour.APPROVE)
    return CardInfo(brand_of(digits), digits[-4:], expiration.strip(), behaviour)
