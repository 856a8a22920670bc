"""The real google-genai SDK against the fake Gemini server: requests and failures."""

from __future__ import annotations

from dataclasses import replace

import pytest
from ai_support import KEY, ai_settings
from fakes.gemini import FakeGemini, Reply, closed_port_url

from bookstore.ai.client import AiRequest, GeminiModel, settings_problem
from bookstore.ai.errors import (
    AiConnectionError,
    AiError,
    AiHttpError,
    AiNotJson,
    AiSchemaMismatch,
    AiTimeout,
)
from bookstore.fraud_detection.ai_prompts import FraudAnswer
from bookstore.settings import Settings

REQUEST = AiRequest("user-fraud", "You judge orders.", "The data.", FraudAnswer)
CLEAN = {"fraud": False, "score": 0.05, "reason": "Looks fine."}


async def test_asks_generate_content_with_a_pinned_version_a_schema_and_the_key(
    fake: FakeGemini, model: GeminiModel
) -> None:
    fake.always(Reply.json(CLEAN))
    answer = await model.generate(REQUEST, 5.0)
    assert answer == FraudAnswer(fraud=False, score=0.05, reason="Looks fine.")
    [request] = fake.requests
    assert request.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert request.api_key == KEY
    config = request.body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert request.schema_keys() == {"fraud", "score", "reason"}
    assert request.body["systemInstruction"]["parts"][0]["text"] == "You judge orders."
    assert request.body["contents"][0]["parts"][0]["text"] == "The data."


async def test_model_and_api_version_come_from_the_settings(fake: FakeGemini) -> None:
    fake.always(Reply.json(CLEAN))
    settings = replace(ai_settings(fake.base_url), gemini_model="gemini-x", gemini_api_version="v1")
    model = GeminiModel(settings)
    try:
        await model.generate(REQUEST, 5.0)
    finally:
        await model.aclose()
    assert fake.requests[0].path == "/v1/models/gemini-x:generateContent"


@pytest.mark.parametrize(
    ("reply", "error", "kind"),
    [
        (Reply.text("Sure! The order looks legitimate."), AiNotJson, "not json"),
        (Reply.text('```json\n{"fraud": false, "score": 0, "reason": ""}\n```'), AiNotJson, None),
        (Reply.text(""), AiNotJson, "not json"),
        (Reply.json({"approved": True}), AiSchemaMismatch, "schema mismatch"),
        (Reply.status(500), AiHttpError, "http 500"),
        (Reply.status(429), AiHttpError, "http 429"),
        (Reply.status(403, "API key not valid"), AiHttpError, "http 403"),
        (Reply.close(), AiConnectionError, "connection"),
    ],
)
async def test_each_failure_becomes_its_own_kind(
    fake: FakeGemini, model: GeminiModel, reply: Reply, error: type[AiError], kind: str | None
) -> None:
    fake.always(reply)
    with pytest.raises(error) as info:
        await model.generate(REQUEST, 5.0)
    if kind is not None:
        assert info.value.kind == kind


@pytest.mark.timeout(60)  # the backstop, should the deadline not be kept
async def test_a_hang_is_a_timeout_at_the_deadline(fake: FakeGemini) -> None:
    fake.always(Reply.hang())
    # The client's own backstop (call timeout + margin) far beyond the suite's timeout:
    # a timeout can only be the call's own 0.2 s deadline.
    model = GeminiModel(ai_settings(fake.base_url, call_timeout_s=3600.0))
    try:
        with pytest.raises(AiTimeout):
            await model.generate(REQUEST, 0.2)
    finally:
        await model.aclose()


async def test_connection_refused_is_a_connection_error() -> None:
    model = GeminiModel(ai_settings(closed_port_url()))
    try:
        with pytest.raises(AiConnectionError):
            await model.generate(REQUEST, 5.0)
    finally:
        await model.aclose()


@pytest.mark.parametrize(
    ("key", "base_url", "problem"),
    [
        ("good-key", "", None),
        ("good-key", "http://127.0.0.1:9", None),
        ("bad key", "", "GEMINI_API_KEY"),
        ("kéy", "", "GEMINI_API_KEY"),
        ("good-key", "127.0.0.1:9", "GEMINI_BASE_URL"),
        ("good-key", "ftp://example.org", "GEMINI_BASE_URL"),
    ],
)
def test_settings_problems_are_named(key: str, base_url: str, problem: str | None) -> None:
    found = settings_problem(Settings(gemini_api_key=key, gemini_base_url=base_url))
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found
        assert key not in found
