"""Fixtures: the fake Gemini server and what talks to it (see ai_fixtures)."""

from ai_fixtures import breaker, fake, model, settings

__all__ = ["breaker", "fake", "model", "settings"]
