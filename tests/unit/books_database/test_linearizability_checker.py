"""The checker itself: it must reject what is not linearizable and accept
tricky histories that are."""

from __future__ import annotations

from collections.abc import Hashable

from bookstore.books_database.linearizability import INFO, BookState, Operation, is_linearizable


def op(call: float, ret: float, *args: object, out: Hashable | None = None) -> Operation:
    return Operation(call, ret, tuple(args), out)


def test_a_stale_read_after_an_acknowledged_write_is_rejected() -> None:
    history = [
        op(1, 2, "set", 7, out="OK"),
        op(3, 4, "read", out=(5, 5)),  # the write returned before this read began
    ]
    assert not is_linearizable(history, BookState(5))


def test_an_oversell_is_rejected() -> None:
    # Two sequential reservations of 2 copies each when only 3 exist: both "OK" is impossible.
    history = [
        op(1, 2, "reserve", "t1", 2, out="OK"),
        op(3, 4, "reserve", "t2", 2, out="OK"),
    ]
    assert not is_linearizable(history, BookState(3))


def test_reads_that_go_back_in_time_are_rejected() -> None:
    # A write concurrent with two sequential reads: once seen, the new value cannot vanish.
    history = [
        op(1, 10, "set", 9, out="OK"),
        op(2, 3, "read", out=(9, 9)),
        op(4, 5, "read", out=(5, 5)),
    ]
    assert not is_linearizable(history, BookState(5))


def test_concurrent_operations_may_take_effect_in_any_order() -> None:
    # The reservation invoked last takes effect first; the read sees the committed take.
    history = [
        op(1, 8, "reserve", "t1", 2, out="VOTED_NO"),
        op(2, 5, "reserve", "t2", 2, out="OK"),
        op(6, 7, "commit", "t2", out="OK"),
        op(9, 10, "read", out=(1, 1)),
    ]
    assert is_linearizable(history, BookState(3))


def test_an_unknown_outcome_may_have_taken_effect_or_not() -> None:
    took_effect = [
        op(1, INFO, "set", 4),
        op(2, 3, "read", out=(5, 5)),
        op(4, 5, "read", out=(4, 4)),
    ]
    never = [op(1, INFO, "set", 4), op(2, 3, "read", out=(5, 5))]
    assert is_linearizable(took_effect, BookState(5))
    assert is_linearizable(never, BookState(5))


def test_an_unknown_outcome_cannot_act_before_it_was_invoked() -> None:
    history = [
        op(1, 2, "read", out=(4, 4)),
        op(3, INFO, "set", 4),
    ]
    assert not is_linearizable(history, BookState(5))


def test_release_frees_and_commit_takes_the_reserved_copies() -> None:
    history = [
        op(1, 2, "reserve", "t1", 2, out="OK"),
        op(3, 4, "read", out=(5, 3)),
        op(5, 6, "release", "t1", out="OK"),
        op(7, 8, "reserve", "t2", 5, out="OK"),
        op(9, 10, "commit", "t2", out="OK"),
        op(11, 12, "read", out=(0, 0)),
        op(13, 14, "set", 1, out="OK"),
    ]
    assert is_linearizable(history, BookState(5))


def test_a_reserve_after_its_txn_was_released_votes_no() -> None:
    """Presumed abort: a release that overtakes its reserve aborts the txn, and the
    late reserve answers no whatever the stock (the participant's rules 3 and 5)."""
    history = [
        Operation(1, 2, ("release", "t1"), "OK"),
        Operation(3, 4, ("reserve", "t1", 2), "VOTED_NO"),
    ]
    assert is_linearizable(history, BookState(5))
    assert not is_linearizable(
        [*history[:1], Operation(3, 4, ("reserve", "t1", 2), "OK")], BookState(5)
    )


def test_a_txn_that_voted_no_cannot_commit() -> None:
    history = [
        Operation(1, 2, ("reserve", "t1", 9), "VOTED_NO"),
        Operation(3, 4, ("commit", "t1"), "OK"),
    ]
    assert not is_linearizable(history, BookState(5))


def _overlapping(n: int) -> list[Operation]:
    """n orders whose reserves all overlap (each answered late), then their commits,
    and n more reserves of unknown outcome: every subset of the pending ones is a
    state the search could visit (2 ** n of them)."""
    history = []
    for i in range(n):
        history.append(op(i, 1000 + 2 * i, "reserve", f"t{i}", 1, out="OK"))
        history.append(op(1001 + 2 * i, 5000 + i, "commit", f"t{i}", out="OK"))
        history.append(op(i + 0.5, INFO, "reserve", f"u{i}", 1))
    return history


def test_many_overlapping_operations_are_decided() -> None:
    # Unknown outcomes that nothing observed are left out; the pytest timeout bounds
    # the search.
    assert is_linearizable(_overlapping(40), BookState(100))


def test_many_overlapping_operations_with_an_oversell_are_rejected() -> None:
    # The same, with 5 copies for 6 acknowledged reserves: no order explains it, and
    # every order is searched to say so.
    assert not is_linearizable(_overlapping(6), BookState(5))
