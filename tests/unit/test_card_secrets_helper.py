"""The helper the card-data tests rely on finds what it must and nothing else."""

from __future__ import annotations

from checkout_requests import CARD, CVV, card_secrets_in


def test_finds_the_card_number_and_the_cvv_standing_alone() -> None:
    assert card_secrets_in(f'{{"number":"{CARD}"}}') == [CARD]
    assert card_secrets_in(f'{{"cvv":"{CVV}"}}') == [CVV]
    assert card_secrets_in(f"cvv={CVV} ok") == [CVV]
    assert card_secrets_in(f"card {CARD} cvv {CVV}") == [CARD, CVV]


def test_ignores_the_cvv_digits_inside_ids_times_and_numbers() -> None:
    for text in (
        f"dd9f{CVV}0-99b6-4a97-{CVV}f-05a5cc607f7b",
        f"{CVV}a0b1c-1111-2222-3333-444455556666",
        f"12:09:{CVV[:2]}.{CVV}",
        f"0.{CVV}",
        f"1{CVV}2",
        f"epoch {CVV}1",
    ):
        assert card_secrets_in(text) == [], text
