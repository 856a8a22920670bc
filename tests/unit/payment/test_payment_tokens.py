"""Sealed tokens: the card's kept part under payment's key, opened only with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from bookstore.payment.cards import Behaviour, CardInfo, card_info
from bookstore.payment.ledger import Authorization, Ledger, UnknownToken
from bookstore.payment.tokens import Sealer, new_key

NUMBER, CVV = "4000000000009995", "975"  # the insufficient-funds test card


def test_a_token_opens_to_the_card_it_was_sealed_from_and_holds_no_number_or_cvv() -> None:
    sealer = Sealer(new_key())
    card = card_info(NUMBER, "12/39", CVV)
    token = sealer.seal(card)
    assert sealer.open(token) == CardInfo("visa", "9995", "12/39", Behaviour.INSUFFICIENT_FUNDS)
    assert token.startswith("tok_") and len(token) <= 128  # the queue's and payment's limit
    assert NUMBER not in token and NUMBER[:12] not in token
    assert sealer.seal(card) != token  # a fresh nonce each time


@pytest.mark.parametrize(
    "forged",
    ["tok_nope", "tok_", "", "nope", "tok_!!!", "tok_" + "A" * 80],
)
def test_a_string_that_is_no_sealed_token_opens_to_nothing(forged: str) -> None:
    assert Sealer(new_key()).open(forged) is None


def test_an_altered_token_or_another_keys_token_opens_to_nothing() -> None:
    sealer = Sealer(new_key())
    token = sealer.seal(card_info("4242424242424242", "12/39", "123"))
    flipped = token[:20] + ("A" if token[20] != "A" else "B") + token[21:]
    assert sealer.open(flipped) is None
    assert Sealer(new_key()).open(token) is None


def test_the_key_survives_a_reopen_and_an_authorize_keeps_the_cards_row(tmp_path: Path) -> None:
    path = tmp_path / "payment.sqlite3"
    ledger = Ledger(path)
    token = ledger.tokenize(card_info("5555555555554444", "12/39", "864"))
    assert ledger.status().tokens == 0  # tokenizing wrote nothing
    ledger.close()
    reopened = Ledger(path)
    try:
        assert reopened.card(token).last4 == "4444"
        reopened.authorize("o1", Authorization(token, 100, "EUR"), epoch=1)
        view = reopened.transaction("o1")
        assert view is not None and (view.brand, view.last4) == ("mastercard", "4444")
        assert reopened.status().tokens == 1
        with pytest.raises(UnknownToken):
            reopened.card("tok_" + token[5:])
    finally:
        reopened.close()
