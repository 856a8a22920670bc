"""The books database's variables: addresses, initial stock, timings."""

from __future__ import annotations

from pathlib import Path

import pytest

from bookstore import cli
from bookstore.books_database.service import config_from
from bookstore.settings import EXIT_CONFIG, SettingsError, from_env


def test_defaults_are_three_replicas_on_50059_to_50061() -> None:
    settings = from_env({})
    assert settings.books_database_addresses == {
        1: "127.0.0.1:50059",
        2: "127.0.0.1:50060",
        3: "127.0.0.1:50061",
    }
    assert settings.books_initial_stock is None
    assert settings.bind_address("books-database", 2) == "127.0.0.1:50060"


def test_a_replica_gets_its_own_file_and_the_configured_stock() -> None:
    env = {
        "BOOKSTORE_DATA_DIR": "/data",
        "BOOKS_INITIAL_STOCK": "100000",
        "BOOKS_DATABASE_ADDRESSES": "1=db-1:50059,2=db-2:50059,3=db-3:50059",
    }
    config = config_from(from_env(env), 3)
    assert config.path == Path("/data/books-database-3.sqlite3")
    assert config.initial_stock == 100_000
    assert config.addresses[3] == "db-3:50059"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BOOKS_INITIAL_STOCK": "many"}, "BOOKS_INITIAL_STOCK='many': expected a whole number"),
        ({"BOOKS_DATABASE_ADDRESSES": "1=x"}, "BOOKS_DATABASE_ADDRESSES='x': expected host:port"),
        (
            {"BOOKS_DATABASE_HEARTBEAT_S": "2.0"},
            "BOOKS_DATABASE_HEARTBEAT_S < BOOKS_DATABASE_ELECTION_MIN_S",
        ),
    ],
)
def test_malformed_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        from_env(env)


def test_an_unknown_replica_id_is_refused() -> None:
    with pytest.raises(SettingsError, match=r"replica id 4 is not in BOOKS_DATABASE_ADDRESSES"):
        config_from(from_env({}), 4)


def test_serving_a_replica_needs_its_id(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "books-database"]) == EXIT_CONFIG
    assert "books-database needs --replica-id N" in capsys.readouterr().err
