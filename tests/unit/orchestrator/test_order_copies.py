"""Each checkout service's copy of the order carries only the card data it needs."""

from __future__ import annotations

from bookstore.orchestrator.models import CheckoutRequest
from bookstore.orchestrator.order_copies import order_copies

REQUEST = CheckoutRequest.model_validate(
    {
        "user": {"name": "Ann", "contact": "ann@example.org"},
        "creditCard": {"number": "4111111111111111", "expirationDate": "12/30", "cvv": "123"},
        "items": [{"name": "Book A", "quantity": 2**40}],
        "billingAddress": {"city": "Tartu", "country": "Estonia"},
        "device": {"type": "phone"},
        "termsAccepted": True,
    }
)


def test_only_transaction_verification_gets_the_card() -> None:
    copies = order_copies("o1", REQUEST)
    tv = copies["transaction-verification"]
    assert (tv.card.number, tv.card.expiration, tv.card.cvv) == ("4111111111111111", "12/30", "123")
    fd = copies["fraud-detection"]
    assert not fd.HasField("card") and fd.card_summary.last4 == "1111"
    sug = copies["suggestions"]
    assert not sug.HasField("card") and not sug.HasField("card_summary")
    assert "4111111111111111" not in str(fd) + str(sug) and "123" not in str(sug)


def test_every_copy_has_the_order_itself() -> None:
    for data in order_copies("o1", REQUEST).values():
        assert data.order_id.value == "o1" and data.customer.name == "Ann"
        assert data.items[0].quantity == 2**31 - 1  # clamped to int32; the checks reject it
        assert data.billing_address.city == "Tartu" and data.client.device_type == "phone"
        assert data.terms_accepted
