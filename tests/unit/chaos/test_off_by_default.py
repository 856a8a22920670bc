"""Chaos is off unless asked for: in the settings' defaults, and in every file of
the Compose and Kubernetes deployments."""

from __future__ import annotations

from pathlib import Path

import pytest

from bookstore import cli, launcher, portcheck
from bookstore.settings import Settings, from_env, get_settings

ROOT = Path(__file__).resolve().parents[3]


def test_settings_default_to_chaos_off_and_local_only() -> None:
    assert Settings().chaos is False and Settings().chaos_allow_remote is False
    assert from_env({}).chaos is False
    assert from_env({"BOOKSTORE_CHAOS": "1"}).chaos is True


def test_no_deployment_file_turns_chaos_on() -> None:
    files = [ROOT / "compose.yaml", *sorted((ROOT / "deploy").rglob("*"))]
    texts = {f: f.read_text() for f in files if f.is_file()}
    assert ROOT / "compose.yaml" in texts
    assert [str(f) for f, text in texts.items() if "CHAOS" in text] == []


@pytest.mark.parametrize(
    ("argv", "env", "chaos"),
    [
        (["up"], {}, False),
        (["up", "--chaos"], {}, True),
        (["up"], {"BOOKSTORE_CHAOS": "1"}, True),
    ],
)
def test_bookstore_up_turns_chaos_on_only_when_asked(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], env: dict[str, str], chaos: bool
) -> None:
    monkeypatch.delenv("BOOKSTORE_CHAOS", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(portcheck, "busy_ports", lambda settings: [])
    started: list[Settings] = []
    monkeypatch.setattr(launcher, "main", lambda settings, color: started.append(settings) or 0)
    get_settings.cache_clear()
    try:
        assert cli.main(argv) == 0
    finally:
        get_settings.cache_clear()
    assert [s.chaos for s in started] == [chaos]
