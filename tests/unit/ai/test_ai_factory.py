"""What the services run with and without a key, and what they say at start-up."""

from __future__ import annotations

from dataclasses import replace

import pytest
from ai_support import KEY, ai_settings

from bookstore.fraud_detection.ai_judge import AiFraudJudge
from bookstore.fraud_detection.rules import RulesJudge
from bookstore.fraud_detection.service import make_judge
from bookstore.settings import Settings, from_env
from bookstore.suggestions.ai_recommender import AiRecommender
from bookstore.suggestions.recommender import CatalogueRecommender
from bookstore.suggestions.service import make_recommender


def _ai_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bookstore.ai"]


def test_without_a_key_the_rules_and_the_catalogue_answer_as_before(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO")
    settings = from_env({})
    assert type(make_judge(settings)) is RulesJudge
    assert type(make_recommender(settings)) is CatalogueRecommender
    lines = _ai_lines(caplog)
    assert len(lines) == 2  # one per service
    assert all(line.startswith("AI off: GEMINI_API_KEY is not set") for line in lines)


def test_with_a_key_the_ai_judge_and_recommender_answer(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    settings = ai_settings("http://127.0.0.1:9")
    assert isinstance(make_judge(settings), AiFraudJudge)
    assert isinstance(make_recommender(settings), AiRecommender)
    [judge_line, recommender_line] = _ai_lines(caplog)
    assert judge_line.startswith("AI on: gemini-2.5-flash at http://127.0.0.1:9")
    assert recommender_line.startswith("AI on:")
    assert KEY not in caplog.text


def test_google_api_key_also_turns_the_ai_on() -> None:
    settings = from_env({"GOOGLE_API_KEY": "k2", "GEMINI_BASE_URL": "http://127.0.0.1:9"})
    assert isinstance(make_judge(settings), AiFraudJudge)


@pytest.mark.parametrize(
    ("key", "base_url", "named"),
    [
        ("has a space", "", "GEMINI_API_KEY"),
        (KEY, "not a url", "GEMINI_BASE_URL"),
        (KEY, "file:///etc/passwd", "GEMINI_BASE_URL"),
    ],
)
def test_bad_ai_settings_are_a_clear_message_and_the_fallbacks_answer(
    caplog: pytest.LogCaptureFixture, key: str, base_url: str, named: str
) -> None:
    caplog.set_level("INFO")
    settings = replace(Settings(), gemini_api_key=key, gemini_base_url=base_url)
    assert type(make_judge(settings)) is RulesJudge
    assert type(make_recommender(settings)) is CatalogueRecommender
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 2
    assert all(named in r.getMessage() and "AI off" in r.getMessage() for r in errors)
    assert key not in caplog.text
