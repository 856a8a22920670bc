"""The stock state machine: reservations, fencing by epoch, idempotency and
precise refusals that change nothing."""

from __future__ import annotations

import pytest

from bookstore.books_database.stock import (
    BAD_REQUEST,
    BELOW_RESERVED,
    OUT_OF_STOCK,
    STALE_EPOCH,
    TXN_FINISHED,
    UNKNOWN_BOOK,
    UNKNOWN_TXN,
    BookRow,
    Op,
    StockMachine,
)


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
    return Op("reserve", f"r:{txn}", txn, epoch, tuple(items.items()))


def test_reserve_commit_takes_the_copies_and_release_frees_them(machine: StockMachine) -> None:
    apply = Log(machine)
    assert apply(reserve("t1", b1=2))[0] == "OK"
    assert (machine.books["b1"].stock, machine.books["b1"].available) == (3, 1)
    assert apply(Op("commit", "c:t1", "t1", 1))[0] == "OK"
    assert (machine.books["b1"].stock, machine.books["b1"].reserved) == (1, 0)
    assert apply(reserve("t2", b1=1))[0] == "OK"
    assert apply(Op("release", "x:t2", "t2", 1))[0] == "OK"
    assert (machine.books["b1"].stock, machine.books["b1"].available) == (1, 1)


def test_a_reservation_is_all_or_nothing_and_names_the_titles_lacking(
    machine: StockMachine,
) -> None:
    result = machine.apply(1, reserve("t1", b1=3, b2=2))
    assert result.code == OUT_OF_STOCK and result.lacking == ("Emma",)
    assert result.message == "out of stock: Emma"
    assert machine.books["b1"].reserved == 0 and machine.books["b2"].reserved == 0


def test_a_duplicate_request_id_gets_the_first_answer(machine: StockMachine) -> None:
    apply = Log(machine)
    assert apply(reserve("t1", b2=1))[0] == "OK"
    assert apply(reserve("t1", b2=1))[0] == "OK"  # same request id: same answer, no change
    assert machine.books["b2"].reserved == 1
    other = Op("reserve", "r:again", "t1", 1, (("b2", 1),))
    assert apply(other)[0] == TXN_FINISHED  # a new request for a used txn is refused


def test_a_lower_epoch_is_refused_once_a_higher_one_was_seen(machine: StockMachine) -> None:
    apply = Log(machine)
    assert apply(reserve("t1", epoch=5, b1=1))[0] == "OK"
    code, message = apply(Op("commit", "c:t1", "t1", 4))
    assert code == STALE_EPOCH and message == "epoch 4 is older than the current epoch 5"
    assert machine.books["b1"].reserved == 1 and machine.max_epoch == 5


@pytest.mark.parametrize(
    ("op", "code", "message"),
    [
        (reserve("t", nope=1), UNKNOWN_BOOK, "no book with id 'nope'"),
        (reserve("t", b1=0), BAD_REQUEST, "quantity of 'b1' is 0: must be 1..1000000"),
        (reserve("t", b1=-2), BAD_REQUEST, "quantity of 'b1' is -2: must be 1..1000000"),
        (reserve("t", b1=10**9), BAD_REQUEST, "quantity of 'b1' is 1000000000: must be 1..1000000"),
        (reserve("t"), BAD_REQUEST, "items must not be empty"),
        (Op("reserve", "r", "", 1, (("b1", 1),)), BAD_REQUEST, "txn_id must be 1..200 characters"),
        (Op("commit", "c", "ghost", 1), UNKNOWN_TXN, "no reservation for transaction ghost"),
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
