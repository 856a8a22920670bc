"""Chaos is off unless asked for: in the settings' defaults, and in every file of
the Compose and Kubernetes deployments."""

from __future__ import annotations

from pathlib import Path

from bookstore.settings import Settings, from_env

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
