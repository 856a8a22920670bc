"""Fixtures for every test of an AI caller: the fake Gemini server, settings pointing
at it, a model and a breaker. A test directory's conftest imports the ones it uses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from ai_support import ai_settings
from fakes.gemini import FakeGemini

from bookstore.ai.breaker import CircuitBreaker
from bookstore.ai.client import GeminiModel
from bookstore.settings import Settings


@pytest.fixture
def fake() -> Iterator[FakeGemini]:
    with FakeGemini() as server:
        yield server


@pytest.fixture
def settings(fake: FakeGemini) -> Settings:
    return ai_settings(fake.base_url)


@pytest.fixture
async def model(settings: Settings) -> AsyncIterator[GeminiModel]:
    gemini = GeminiModel(settings)
    yield gemini
    await gemini.aclose()


@pytest.fixture
def breaker() -> CircuitBreaker:
    return CircuitBreaker(failures=3, cooldown_s=30.0)
