"""Logging for every service: one line per record, card numbers redacted.

Services never log a card number; the redacting filter is a second line of
defence that masks any digit run shaped like a card number (12-19 digits,
spaces or dashes allowed) to its last four digits (valid card or not:
a mistyped number is still a customer's card number).
"""

from __future__ import annotations

import logging
import re
import sys

# A card-shaped run: 12-19 digits, single spaces or dashes allowed between
# them, standing alone (not part of a longer word or a dashed id such as a UUID).
_PAN = re.compile(r"(?<![\w-])(?:\d[ -]?){11,18}\d(?![\w]|-\w)")


def has_card_number(text: str) -> bool:
    """Whether `redact` would change `text` (a search, no copy)."""
    return _PAN.search(text) is not None


def redact(text: str) -> str:
    def mask(m: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", m.group(0))
        return "****" + digits[-4:]

    return _PAN.sub(mask, text)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def setup(service: str, level: str = "INFO") -> None:
    """Configure the root logger for `service` (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(
            f"%(asctime)s.%(msecs)03d %(levelname)-5s {service} %(name)s: %(message)s",
            datefmt="%H:%M:%S",
        )
    )
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn.access", "httpx", "httpcore", "google_genai"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
