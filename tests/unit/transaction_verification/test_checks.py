from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bookstore.catalogue import load_catalogue
from bookstore.pb import checkout_pb2, common_pb2
from bookstore.transaction_verification import checks

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


def card(number: str, expiry: str = "12/30", cvv: str = "123") -> checkout_pb2.Card:
    return checkout_pb2.Card(number=number, expiration=expiry, cvv=cvv)


def order(**fields: object) -> checkout_pb2.OrderData:
    data = checkout_pb2.OrderData(
        items=[common_pb2.OrderItem(title="Book A", quantity=1)],
        customer=checkout_pb2.Customer(name="Ada", contact="ada@example.com"),
        billing_address=checkout_pb2.Address(
            street="1 Main St", city="Tartu", zip="50090", country="Estonia"
        ),
        terms_accepted=True,
    )
    for name, value in fields.items():
        if isinstance(value, list):
            del getattr(data, name)[:]
            getattr(data, name).extend(value)
        elif hasattr(value, "CopyFrom"):
            getattr(data, name).CopyFrom(value)
        else:
            setattr(data, name, value)
    return data


@pytest.mark.parametrize(
    ("digits", "ok"),
    [
        ("4111111111111111", True),
        ("4111111111111112", False),
        ("79927398713", True),
        ("79927398710", False),
        ("0", True),
        ("", False),
        ("41a1", False),
    ],
)
def test_luhn(digits: str, ok: bool) -> None:
    assert checks.luhn_ok(digits) is ok


def with_check_digit(prefix: str) -> str:
    """`prefix` plus the digit that makes it pass Luhn."""
    return next(prefix + d for d in "0123456789" if checks.luhn_ok(prefix + d))


def test_valid_cards_of_each_brand_pass() -> None:
    for number, cvv in [
        ("4111111111111111", "123"),
        ("4111 1111 1111 1111", "123"),
        ("4111-1111-1111-1111", "123"),
        ("4222222222222", "123"),  # Visa, 13 digits
        ("5555555555554444", "123"),
        ("2223003122003222", "123"),  # Mastercard 2-series
        ("378282246310005", "1234"),  # Amex
        ("6011111111111117", "123"),  # Discover
    ]:
        assert checks.check_card(card(number, cvv=cvv), NOW) == "", number


def test_bad_numbers_are_rejected_without_echoing_them() -> None:
    for number in ["4111111111111112", "411111111111111", "37828224631000", "41111111111111x1"]:
        reason = checks.check_card(card(number), NOW)
        assert reason
        assert number[:12] not in reason
    assert checks.check_card(card(""), NOW) == "Please provide a card number."
    assert checks.check_card(card("4111111111111112"), NOW) == "The card number is not valid."


def test_digits_other_than_ascii_are_not_card_digits() -> None:
    # the declined test card 4000000000000002 with four Extended Arabic-Indic zeros
    disguised = "4\u06f0\u06f0\u06f0\u06f000000000002"
    assert checks.check_card(card(disguised), NOW) == "The card number may contain only digits."
    assert checks.check_card(card("5\u00b2" + "1" * 14), NOW)  # no crash on "²"
    assert "CVV" in checks.check_card(card("4111111111111111", cvv="1\u06f23"), NOW)
    assert not checks.luhn_ok("\u0664\u0661\u0661\u0661")


def test_length_by_brand() -> None:
    def verdict(prefix: str, length: int, cvv: str = "123") -> str:
        number = with_check_digit(prefix.ljust(length - 1, "0"))
        return checks.check_card(card(number, cvv=cvv), NOW)

    for length in (13, 16, 19):
        assert verdict("4", length) == "", length
    for length in (12, 14, 15, 17, 18):
        assert verdict("4", length) == "The card number is not valid.", length
    assert verdict("51", 16) == ""
    assert verdict("51", 15) == "The card number is not valid."
    assert verdict("34", 15, "1234") == ""
    assert verdict("34", 16, "1234") == "The card number is not valid."
    for length in range(16, 20):
        assert verdict("6011", length) == "", length
    assert verdict("6011", 15) == "The card number is not valid."
    assert verdict("9", 12) == ""
    assert verdict("9", 11) == "The card number is not valid."
    assert verdict("9", 20) == "The card number is not valid."


def test_expiry_is_valid_to_the_end_of_its_month() -> None:
    last_moment = datetime(2026, 3, 31, 23, 59, 59, tzinfo=UTC)
    first_of_next = datetime(2026, 4, 1, 0, 0, tzinfo=UTC)
    assert checks.check_card(card("4111111111111111", "03/26"), last_moment) == ""
    assert (
        checks.check_card(card("4111111111111111", "03/26"), first_of_next)
        == "The card expired in 03/26."
    )
    assert checks.check_card(card("4111111111111111", "12/25"), NOW) == "The card expired in 12/25."
    assert checks.check_card(card("4111111111111111", "04/26"), NOW) == ""


@pytest.mark.parametrize("expiry", ["13/30", "00/30", "1230", "12/3", "ab/cd", ""])
def test_malformed_expiry_is_rejected(expiry: str) -> None:
    assert "MM/YY" in checks.check_card(card("4111111111111111", expiry), NOW)


def test_cvv_by_brand() -> None:
    visa, amex = "4111111111111111", "378282246310005"
    assert checks.check_card(card(visa, cvv="123"), NOW) == ""
    assert "3 digits" in checks.check_card(card(visa, cvv="1234"), NOW)
    assert "3 digits" in checks.check_card(card(visa, cvv="12a"), NOW)
    assert checks.check_card(card(amex, cvv="1234"), NOW) == ""
    assert "4 digits" in checks.check_card(card(amex, cvv="123"), NOW)


def test_items_check() -> None:
    catalogue = load_catalogue()
    assert checks.check_items(order(), catalogue) == ""
    assert checks.check_items(order(items=[]), catalogue) == "The order has no items."
    zero = [common_pb2.OrderItem(title="Book A", quantity=0)]
    assert "at least 1" in checks.check_items(order(items=zero), catalogue)
    negative = [common_pb2.OrderItem(title="Book B", quantity=-2)]
    assert "at least 1" in checks.check_items(order(items=negative), catalogue)
    unknown = [common_pb2.OrderItem(title="The Necronomicon", quantity=1)]
    assert "The Necronomicon" in checks.check_items(order(items=unknown), catalogue)
    by_id = [common_pb2.OrderItem(book_id="b001", quantity=1)]
    assert checks.check_items(order(items=by_id), catalogue) == ""


def test_an_unknown_long_title_is_not_echoed_at_full_length() -> None:
    long_title = [common_pb2.OrderItem(title="x" * 100_000, quantity=1)]
    reason = checks.check_items(order(items=long_title), load_catalogue())
    assert "x" * (checks.LABEL_CHARS - 1) + "…" in reason
    assert len(reason) < 2 * checks.LABEL_CHARS


def test_user_data_check() -> None:
    assert checks.check_user_data(order()) == ""
    no_name = order(customer=checkout_pb2.Customer(name=" ", contact="a@b.c"))
    assert checks.check_user_data(no_name) == "Please provide your name."
    no_city = order(billing_address=checkout_pb2.Address(street="x", zip="1", country="EE"))
    assert "billing city" in checks.check_user_data(no_city)
    assert checks.check_user_data(order(terms_accepted=False)) == (
        "Please accept the terms and conditions."
    )
