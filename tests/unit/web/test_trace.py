import json
import re
from typing import Any

from bookstore.web.trace import REGEX, events_of, shiviz_log

TV, FD, SUG = "transaction-verification", "fraud-detection", "suggestions"


def _ev(letter: str, service: str, clock: list[int], at: float, ok: bool = True) -> dict[str, Any]:
    return {
        "event": letter,
        "name": {"a": "items", "b": "user-data", "c": "card"}.get(letter, "x"),
        "service": service,
        "clock": clock,
        "ok": ok,
        "reason": "" if ok else "The card number is not valid.\nTry again",
        "answeredBy": "rules",
        "at": at,
        "durationMs": 1.0,
    }


def _approved() -> dict[str, Any]:
    # Reports arrive out of causal order on purpose: the trace must reorder them.
    return {
        "orderId": "o1",
        "status": "Order Approved",
        "vectorClock": [3, 2, 1],
        "events": [
            _ev("b", TV, [2, 0, 0], 10.0),
            _ev("a", TV, [1, 0, 0], 10.5),
            _ev("d", FD, [2, 1, 0], 10.2),
            _ev("c", TV, [3, 1, 0], 10.3),
            _ev("f", SUG, [3, 2, 1], 10.6),
            _ev("e", FD, [3, 2, 0], 10.4),
        ],
        "cancel": None,
    }


def _parse(text: str) -> list[tuple[str, dict[str, int], str]]:
    """Read the log the way ShiViz does: skip two header lines, match each line."""
    pattern = re.compile(REGEX.replace("(?<", "(?P<"))
    rows = []
    for line in text.splitlines()[2:]:
        m = pattern.fullmatch(line)
        assert m, line
        rows.append((m["host"], json.loads(m["clock"]), m["event"]))
    return rows


def test_log_starts_with_regex_and_empty_delimiter_line() -> None:
    lines = shiviz_log(_approved()).splitlines()
    assert lines[0] == REGEX
    assert lines[1] == ""


def test_events_are_in_a_linear_extension_of_their_clocks() -> None:
    rows = _parse(shiviz_log(_approved()))
    assert [r[2].split()[0] for r in rows] == ["a", "b", "d", "c", "e", "f", "end"]
    for i, (_, earlier, _) in enumerate(rows):
        for _, later, _ in rows[i + 1 :]:
            # nothing later happened before anything earlier
            assert not (
                all(later.get(h, 0) <= earlier.get(h, 0) for h in later) and later != earlier
            )


def test_each_host_counts_its_own_events_from_one() -> None:
    rows = _parse(shiviz_log(_approved()))
    seen: dict[str, int] = {}
    for host, clock, _ in rows:
        seen[host] = seen.get(host, 0) + 1
        assert clock[host] == seen[host]
    assert seen == {TV: 3, FD: 2, SUG: 1, "orchestrator": 1}


def test_zero_entries_are_left_out_of_clocks() -> None:
    host, clock, text = _parse(shiviz_log(_approved()))[0]
    assert (host, clock) == (TV, {TV: 1})
    assert text == "a items: ok"


def test_end_event_carries_the_final_clock() -> None:
    host, clock, text = _parse(shiviz_log(_approved()))[-1]
    assert host == "orchestrator"
    assert clock == {TV: 3, FD: 2, SUG: 1, "orchestrator": 1}
    assert "Order Approved" in text
    assert "[3,2,1]" in text


def test_cancelled_order_ends_with_the_clocks_at_cancel() -> None:
    order = {
        "status": "Order Rejected",
        "vectorClock": None,
        "events": [
            _ev("a", TV, [1, 0, 0], 1.0),
            _ev("b", TV, [2, 0, 0], 1.1),
            _ev("c", TV, [3, 0, 0], 1.2, ok=False),
            _ev("d", FD, [2, 1, 0], 1.3),
        ],
        "cancel": {"clocks": {TV: [3, 1, 0], FD: [3, 1, 0], SUG: [3, 1, 0]}},
    }
    rows = _parse(shiviz_log(order))
    failed = next(r for r in rows if r[2].startswith("c "))
    # a multi-line reason stays on one line
    assert failed[2] == "c card: failed: The card number is not valid. Try again"
    host, clock, text = rows[-1]
    assert host == "orchestrator"
    assert clock == {TV: 3, FD: 1, "orchestrator": 1}
    assert "cancelled" in text
    assert "suggestions [3,1,0]" in text


def test_malformed_events_are_left_out() -> None:
    order = {
        "status": "Order Approved",
        "events": [
            _ev("a", TV, [1, 0, 0], 1.0),
            {**_ev("b", TV, [2, 0, 0], 1.1), "clock": None},
            {**_ev("d", FD, [1, 1, 0], 1.1), "service": "elsewhere"},
            {**_ev("e", FD, [1, 1], 1.1)},
        ],
    }
    assert [e.description.split()[0] for e in events_of(order)] == ["a", "end"]


def test_order_without_events_gives_only_the_header() -> None:
    assert shiviz_log({"status": "Order Rejected", "events": []}) == REGEX + "\n\n"


def test_report_times_may_be_rfc3339() -> None:
    order = {
        "status": "Order Approved",
        "events": [
            {**_ev("d", FD, [2, 1, 0], 0), "at": "2026-01-01T00:00:02.000Z"},
            {**_ev("c", TV, [3, 0, 0], 0), "at": "2026-01-01T00:00:01.000Z"},
        ],
    }
    assert [e.description.split()[0] for e in events_of(order)] == ["c", "d", "end"]
