"""The executor's two-phase-commit adapter: reasons customers read, the test crash hook."""

from __future__ import annotations

from pathlib import Path

import pytest

from bookstore.order_executor.transaction import CrashHook, customer_reason


@pytest.mark.parametrize(
    ("logged", "customer"),
    [
        ("books-database: out of stock: Dune, Emma", "out of stock: Dune, Emma"),
        ("payment: card declined", "payment declined: card declined"),
        ("payment: insufficient funds", "payment declined: insufficient funds"),
        (
            "no vote from payment in time",
            "payment declined: the card processor did not answer in time",
        ),
        (
            "no vote from books-database, payment in time",
            "not executed: no vote from books-database, payment in time",
        ),
        (
            "books-database: TXN_FINISHED: txn o1 was released",
            "not executed: books-database: TXN_FINISHED: txn o1 was released",
        ),
    ],
)
def test_an_abort_reads_as_the_customer_reason(logged: str, customer: str) -> None:
    assert customer_reason(logged) == customer


def test_the_crash_hook_is_armed_only_for_its_point_and_only_once(tmp_path: Path) -> None:
    hook = CrashHook("after-log", tmp_path)
    assert hook.armed("after-log") and not hook.armed("after-prepare")
    hook.fire("after-prepare", "o1")  # not its point: nothing happens
    hook.marker.touch()  # what firing leaves behind (before the SIGKILL)
    assert not hook.armed("after-log")
    assert not CrashHook("after-log", tmp_path).armed("after-log")  # the next leader too


def test_an_unknown_crash_point_arms_nothing(tmp_path: Path) -> None:
    assert not CrashHook("now", tmp_path).armed("now")
    assert not CrashHook("", tmp_path).armed("")
