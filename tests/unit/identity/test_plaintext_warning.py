import pytest

from bookstore import cli, launcher, portcheck
from bookstore.identity import plaintext_warning
from bookstore.settings import Settings, get_settings


def test_tls_is_on_by_default_and_off_is_warned_about() -> None:
    assert plaintext_warning(Settings()) is None
    warning = plaintext_warning(Settings(tls=False))
    assert warning is not None and "BOOKSTORE_TLS is off" in warning and "grpcurl" in warning


def test_bookstore_up_with_tls_off_warns_at_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BOOKSTORE_TLS", "off")
    monkeypatch.setattr(portcheck, "busy_ports", lambda settings: [])
    started: list[Settings] = []
    monkeypatch.setattr(launcher, "main", lambda settings, color: started.append(settings) or 0)
    get_settings.cache_clear()
    try:
        assert cli.main(["up", "--no-color"]) == 0
    finally:
        get_settings.cache_clear()
    assert [s.tls for s in started] == [False]
    assert "bookstore up: warning: BOOKSTORE_TLS is off" in capsys.readouterr().err
