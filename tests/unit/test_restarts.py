"""The launcher's restart decision: pure, each run given as its exit code, how long it
ran (fake time: plain numbers) and its last lines of output."""

from __future__ import annotations

import pytest

from bookstore.restarts import Exit, GiveUp, RestartPolicy
from bookstore.settings import EXIT_CONFIG

TRACEBACK = (
    "Traceback (most recent call last):",
    '  File "/srv/bookstore/suggestions/service.py", line 3, in <module>',
    "ImportError: cannot import name 'Ranker' from 'bookstore.suggestions.rank'",
)


def crash(ran_s: float = 0.8, code: int = 1, tail: tuple[str, ...] = TRACEBACK) -> Exit:
    return Exit(code=code, ran_s=ran_s, tail=tail)


def test_a_configuration_error_is_given_up_at_its_first_exit() -> None:
    policy = RestartPolicy()
    tail = ("bookstore: configuration error: OTEL_EXPORTER_OTLP_PROTOCOL='x': expected ...",)
    verdict = policy.exited(crash(code=EXIT_CONFIG, tail=tail))
    assert verdict == GiveUp("stopped at start-up on a configuration error (code 78)", tail)


def test_the_same_error_three_times_in_a_row_is_given_up_on_the_third() -> None:
    policy = RestartPolicy()
    assert policy.exited(crash(ran_s=2.5)) is None
    assert policy.exited(crash(ran_s=1.0)) is None
    verdict = policy.exited(crash(ran_s=1.1))
    assert verdict is not None
    assert verdict.reason == "failed at start-up 3 times in a row with the same error (code 1)"
    assert verdict.tail == TRACEBACK


def test_a_different_error_starts_the_count_again() -> None:
    policy = RestartPolicy()
    other = (*TRACEBACK[:-1], "OSError: [Errno 98] Address already in use")
    assert policy.exited(crash()) is None
    assert policy.exited(crash()) is None
    assert policy.exited(crash(tail=other)) is None  # not the same: 1 in a row
    assert policy.exited(crash()) is None
    assert policy.exited(crash()) is None
    assert policy.exited(crash()) is not None


def test_a_different_exit_code_is_a_different_error() -> None:
    policy = RestartPolicy()
    assert policy.exited(crash(code=1)) is None
    assert policy.exited(crash(code=-9)) is None
    assert policy.exited(crash(code=1)) is None
    assert policy.exited(crash(code=1)) is None
    verdict = policy.exited(crash(code=1))
    assert verdict is not None and "(code 1)" in verdict.reason


def test_log_lines_that_differ_only_in_their_clock_stamp_are_the_same_error() -> None:
    policy = RestartPolicy()
    for stamp in ("12:00:01.101", "12:00:02.734", "12:00:04.950"):
        verdict = policy.exited(
            crash(tail=(f"{stamp} ERROR payment bookstore: the ledger is unreadable",))
        )
    assert verdict is not None


def test_a_killed_service_is_described_by_its_signal() -> None:
    policy = RestartPolicy()
    verdicts = [policy.exited(crash(code=-9, tail=())) for _ in range(3)]
    assert verdicts == [
        None,
        None,
        GiveUp("failed at start-up 3 times in a row with the same error (signal 9)", ()),
    ]


def test_a_service_reported_ready_is_always_restarted() -> None:
    policy = RestartPolicy()
    policy.ready()
    assert policy.came_up
    for _ in range(5):
        assert policy.exited(crash()) is None
    assert policy.exited(crash(code=EXIT_CONFIG)) is None


def test_a_run_that_lasted_long_enough_counts_as_having_come_up() -> None:
    policy = RestartPolicy(up_after_s=10.0)
    assert policy.exited(crash(ran_s=9.9)) is None
    assert not policy.came_up
    assert policy.exited(crash(ran_s=10.0)) is None  # it came up, then died
    assert policy.came_up
    for _ in range(5):  # and failing alike at every start since is restarted still
        assert policy.exited(crash(ran_s=0.5)) is None


def test_an_empty_output_is_an_error_too() -> None:
    policy = RestartPolicy()
    assert policy.exited(crash(tail=())) is None
    assert policy.exited(crash(tail=("", "  "))) is None
    assert policy.exited(crash(tail=())) == GiveUp(
        "failed at start-up 3 times in a row with the same error (code 1)", ()
    )


def test_at_least_one_failure_is_needed() -> None:
    with pytest.raises(ValueError, match="same_error_repeats"):
        RestartPolicy(same_error_repeats=0)
