"""The one timestamp format of the bookstore's records and replies."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_iso(unix: float | None = None) -> str:
    """ISO 8601 in UTC with milliseconds and a `Z`, e.g. `2026-01-02T03:04:05.678Z`.

    `unix` is seconds since the epoch; None means now.
    """
    moment = datetime.now(UTC) if unix is None else datetime.fromtimestamp(unix, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
