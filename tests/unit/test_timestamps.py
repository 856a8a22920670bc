from __future__ import annotations

from datetime import UTC, datetime

from bookstore.timestamps import utc_iso


def test_a_unix_time_becomes_utc_iso_with_milliseconds_and_z() -> None:
    assert utc_iso(1_700_000_000.1234) == "2023-11-14T22:13:20.123Z"
    assert utc_iso(0) == "1970-01-01T00:00:00.000Z"


def test_without_an_argument_it_is_now() -> None:
    before = datetime.now(UTC)
    stamp = utc_iso()
    after = datetime.now(UTC)
    assert stamp.endswith("Z")
    moment = datetime.fromisoformat(stamp)
    assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= moment <= after
