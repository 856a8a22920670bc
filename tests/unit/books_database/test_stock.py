"""The stock state machine: reservations under the participant rules (fencing by
epoch, idempotent by txn id, presumed abort), idempotency by request id and
precise refusals that change nothing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bookstore.books_database.stock import (
    BAD_REQUEST,
    BELOW_RESERVED,
    STALE_EPOCH,
    UNKNOWN_BOOK,
    UNKNOWN_TXN,
    VOTED_NO,
    BookRow,
    Image,
    Op,
    Result,
    StockMachine,
    Txn,
)
from bookstore.commitment.participant import State


@pytest.fixture
def machine() -> StockMachine:
    return StockMachine({"b1": BookRow("Dune", 3), "b2": BookRow("Emma", 1)})


class Log:
    def __init__(self, machine: StockMachine) -> None:
        self.machine = machine

    def __call__(self, op: Op) -> tuple[str, str]:
        result = self.machine.apply(self.machine.applied + 1, op)
        return result.code, result.message


def reserve(txn: str, epoch: int = 1, **items: int) -> Op:
    return Op("reserve", f"r:{txn}@{epoch}", txn, epoch, tuple(items.items()))


def test_reserve_commit_takes_the_copies_and_release_frees_them(machine: StockMachine) -> None:
    apply = Log(machine)
    assert apply(reserve("t1", b1=2))[0] == "OK"
    assert (machine.books["b1"].stock, machine.books["b1"].available) == (3, 1)
    assert apply(Op("commit", "c:t1", "t1", 1))[0] == "OK"
    assert (machine.books["b1"].stock, machine.books["b1"].reserved) == (1, 0)
    assert apply(reserve("t2", b1=1))[0] == "OK"
    assert apply(Op("release", "x:t2", "t2", 1))[0] == "OK"
    assert (machine.books["b1"].stock, machine.books["b1"].available) == (1, 1)


def test_a_reservation_is_all_or_nothing_and_a_no_vote_names_the_titles_lacking(
    machine: StockMachine,
) -> None:
    apply = Log(machine)
    assert apply(reserve("t1", b1=3, b2=2)) == (VOTED_NO, "out of stock: Emma")
    assert machine.books["b1"].reserved == 0 and machine.books["b2"].reserved == 0
    assert machine.txns["t1"].state is State.ABORTED  # the no is remembered
    apply(Op("set_stock", "s1", items=(("b2", 5),)))
    again = Op("reserve", "r:t1-again", "t1", 1, (("b2", 2), ("b1", 3)))
    assert apply(again) == (VOTED_NO, "out of stock: Emma")  # the same no, though copies came


def test_a_duplicate_request_id_gets_the_first_answer(machine: StockMachine) -> None:
    apply = Log(machine)
    assert apply(reserve("t1", b2=1))[0] == "OK"
    assert apply(reserve("t1", b2=1))[0] == "OK"  # same request id: same answer, no change
    assert machine.books["b2"].reserved == 1


def test_prepare_commit_and_release_are_idempotent_by_txn_id(machine: StockMachine) -> None:
    """A newer coordinator's messages are new requests: the participant rules answer them."""
    apply = Log(machine)
    assert apply(reserve("t1", epoch=1, b1=1))[0] == "OK"
    assert apply(reserve("t1", epoch=2, b1=1))[0] == "OK"  # a re-prepare takes the epoch
    assert machine.books["b1"].reserved == 1 and machine.txns["t1"].epoch == 2
    other = Op("reserve", "r:t1@3", "t1", 3, (("b1", 2),))
    assert apply(other) == ("TXN_MISMATCH", "txn t1 was prepared with another request")
    assert apply(Op("commit", "c:t1@2", "t1", 2))[0] == "OK"
    assert apply(Op("commit", "c:t1@3", "t1", 3))[0] == "OK"  # the same answer again
    assert (machine.books["b1"].stock, machine.books["b1"].reserved) == (2, 0)
    assert apply(Op("release", "x:t1@3", "t1", 3)) == (
        "ALREADY_COMMITTED",
        "txn t1 was committed",
    )
    assert apply(Op("release", "x:t2@3", "t2", 3))[0] == "OK"  # presumed abort
    assert apply(reserve("t2", epoch=3, b1=1)) == (VOTED_NO, "released")  # a late prepare
    assert apply(Op("commit", "c:t2@3", "t2", 3)) == ("ALREADY_ABORTED", "txn t2 was aborted")
    assert machine.books["b1"].available == 2


def test_a_lower_epoch_is_refused_once_a_higher_one_was_seen(machine: StockMachine) -> None:
    apply = Log(machine)
    assert apply(reserve("t1", epoch=5, b1=1))[0] == "OK"
    code, message = apply(Op("commit", "c:t1", "t1", 4))
    assert code == STALE_EPOCH and message == "epoch 4 is older than 5"
    assert machine.books["b1"].reserved == 1 and machine.max_epoch == 5
    assert machine.txns["t1"].state is State.PREPARED


def test_a_refused_operation_does_not_raise_the_epoch(machine: StockMachine) -> None:
    apply = Log(machine)
    assert apply(Op("commit", "c:ghost", "ghost", 7))[0] == UNKNOWN_TXN
    assert machine.max_epoch == 0 and "ghost" not in machine.txns


@pytest.mark.parametrize(
    ("op", "code", "message"),
    [
        (reserve("t", nope=1), UNKNOWN_BOOK, "no book with id 'nope'"),
        (reserve("t", b1=0), BAD_REQUEST, "quantity of 'b1' is 0: must be 1..1000000"),
        (reserve("t", b1=-2), BAD_REQUEST, "quantity of 'b1' is -2: must be 1..1000000"),
        (reserve("t", b1=10**9), BAD_REQUEST, "quantity of 'b1' is 1000000000: must be 1..1000000"),
        (reserve("t"), BAD_REQUEST, "items must not be empty"),
        (Op("reserve", "r", "", 1, (("b1", 1),)), BAD_REQUEST, "txn_id must be 1..200 characters"),
        (Op("commit", "c", "ghost", 1), UNKNOWN_TXN, "txn ghost was never prepared here"),
        (Op("drop", "d"), BAD_REQUEST, "unknown operation 'drop'"),
    ],
)
def test_malformed_operations_are_refused_precisely_and_change_nothing(
    machine: StockMachine, op: Op, code: str, message: str
) -> None:
    before = machine.digest()
    assert Log(machine)(op) == (code, message)
    assert machine.digest() == before and machine.max_epoch == 0


def test_set_stock_cannot_go_below_the_reserved_copies(machine: StockMachine) -> None:
    apply = Log(machine)
    apply(reserve("t1", b1=2))
    assert apply(Op("set_stock", "s1", items=(("b1", 1),)))[0] == BELOW_RESERVED
    assert apply(Op("set_stock", "s2", items=(("b1", 9),)))[0] == "OK"
    assert machine.books["b1"].available == 7


def test_equal_states_have_equal_digests(machine: StockMachine) -> None:
    twin = StockMachine({"b1": BookRow("Dune", 3), "b2": BookRow("Emma", 1)})
    assert machine.digest() == twin.digest()
    Log(machine)(reserve("t1", b1=1))
    assert machine.digest() != twin.digest()
    with pytest.raises(ValueError, match="applying index 5 after 1"):
        machine.apply(5, reserve("t2", b1=1))


@given(
    txns=st.integers(0, 30),
    answers=st.integers(0, 30),
    rows=st.integers(1, 40),
)
def test_an_image_split_in_parts_joins_back_to_itself(txns: int, answers: int, rows: int) -> None:
    machine = StockMachine({"b1": BookRow("Dune", 5), "b2": BookRow("Emma", 2)}, max_epoch=3)
    machine.txns = {f"t{i}": Txn(f"t{i}", State.ABORTED, 1, None) for i in range(txns)}
    machine.answers = {f"r{i}": Result() for i in range(answers)}
    image = machine.image()
    parts = image.split(rows)
    assert Image.join(parts) == image
    assert all(len(p.txns) <= rows and len(p.answers) <= rows for p in parts)
