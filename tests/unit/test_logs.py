import logging

import pytest

from bookstore.logs import RedactingFilter, redact


@pytest.mark.parametrize(
    "text",
    ["4111111111111111", "4111 1111 1111 1111", "4111-1111-1111-1111", "378282246310005"],
)
def test_card_numbers_are_masked_to_the_last_four(text: str) -> None:
    masked = redact(f"card {text} declined")
    assert "11111111" not in masked and "28224631" not in masked
    assert masked.endswith(f"****{text.replace(' ', '').replace('-', '')[-4:]} declined")


def test_short_numbers_and_clocks_are_untouched() -> None:
    assert redact("order=12 clock=[3,2,1] zip 12345") == "order=12 clock=[3,2,1] zip 12345"


def test_filter_rewrites_formatted_records() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "n=%s", ("5500005555555559",), None)
    assert RedactingFilter().filter(record)
    assert record.getMessage() == "n=****5559"


def test_order_ids_with_long_digit_runs_are_untouched() -> None:
    text = "order=3b09277b-4612-8251-2283-678901234567 event=a"
    assert redact(text) == text


def test_mistyped_card_numbers_are_masked_too() -> None:
    assert redact("card 4111111111111112 declined") == "card ****1112 declined"
