import pytest
from bully_board import Board


@pytest.fixture
def board4() -> Board:
    return Board([1, 2, 3, 4])


@pytest.fixture
def board5() -> Board:
    return Board([1, 2, 3, 4, 5])
