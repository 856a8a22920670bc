from collections.abc import Iterator
from pathlib import Path

import pytest

from bookstore import cli
from bookstore.settings import EXIT_CONFIG, get_settings


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    """`bookstore` reads the settings of this test's environment, and only this test."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_bookstore_certs_makes_every_certificate_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ORDER_QUEUE_ADDRESS", "order-queue:50054")
    out = tmp_path / "certs"
    assert cli.main(["certs", "--out", str(out)]) == 0
    assert "made ca, orchestrator," in capsys.readouterr().out
    for name in ("ca", "order-queue", "order-executor-4", "books-database-3", "launcher"):
        assert (out / f"{name}.pem").is_file() and (out / f"{name}.key").is_file()
    assert cli.main(["certs", "--out", str(out)]) == 0
    assert capsys.readouterr().out.endswith(": made nothing\n")


def test_bookstore_certs_without_out_uses_the_tls_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOOKSTORE_DATA_DIR", str(tmp_path))
    assert cli.main(["certs"]) == 0
    assert (tmp_path / "tls" / "orchestrator.pem").is_file()
    monkeypatch.setenv("BOOKSTORE_TLS_DIR", str(tmp_path / "mounted"))
    get_settings.cache_clear()
    assert cli.main(["certs"]) == 0
    assert (tmp_path / "mounted" / "orchestrator.pem").is_file()


def test_a_service_without_its_certificate_stops_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BOOKSTORE_DATA_DIR", str(tmp_path))
    assert cli.main(["serve", "order-queue"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "configuration error" in err and f"{tmp_path}/tls/" in err
    assert "bookstore up` makes the certificates" in err
