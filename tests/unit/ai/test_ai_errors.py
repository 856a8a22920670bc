"""Provider exceptions become our AiError kinds in one place; answers are checked strictly."""

from __future__ import annotations

import httpx2
import pytest
from google.genai import errors as genai_errors
from pydantic import BaseModel

from bookstore.ai.client import parse_answer
from bookstore.ai.errors import (
    AiConnectionError,
    AiError,
    AiHttpError,
    AiNotJson,
    AiSchemaMismatch,
    AiTimeout,
    translate,
    translated,
)
from bookstore.fraud_detection.ai_prompts import FraudAnswer
from bookstore.suggestions.ai_recommender import SuggestionAnswer


def _api_error(code: int) -> genai_errors.APIError:
    body = {"error": {"code": code, "message": "x", "status": "S"}}
    if code >= 500:
        return genai_errors.ServerError(code, body)
    return genai_errors.ClientError(code, body)


@pytest.mark.parametrize("code", [500, 502, 503, 504])
def test_server_errors_are_http_errors_worth_a_retry(code: int) -> None:
    error = translate(_api_error(code))
    assert isinstance(error, AiHttpError)
    assert error.kind == f"http {code}"
    assert error.retryable


@pytest.mark.parametrize("code", [400, 403, 404, 429])
def test_client_errors_are_not_retried(code: int) -> None:
    error = translate(_api_error(code))
    assert isinstance(error, AiHttpError)
    assert error.kind == f"http {code}"
    assert not error.retryable


@pytest.mark.parametrize(
    "exc",
    [TimeoutError(), TimeoutError(), httpx2.ReadTimeout("slow"), httpx2.ConnectTimeout("")],
)
def test_timeouts(exc: Exception) -> None:
    assert isinstance(translate(exc), AiTimeout)


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(),
        httpx2.ConnectError("refused"),
        httpx2.RemoteProtocolError("Server disconnected without sending a response."),
        httpx2.ReadError("reset"),
    ],
)
def test_connection_failures(exc: Exception) -> None:
    error = translate(exc)
    assert isinstance(error, AiConnectionError)
    assert error.retryable


def test_anything_else_is_still_an_ai_error() -> None:
    error = translate(RuntimeError("surprise"))
    assert type(error) is AiError
    assert error.kind == "error"


def test_translated_reraises_as_ai_error_with_the_cause() -> None:
    with pytest.raises(AiConnectionError) as info, translated():
        raise httpx2.ConnectError("refused")
    assert isinstance(info.value.__cause__, httpx2.ConnectError)


def test_a_valid_answer_parses() -> None:
    answer = parse_answer('{"fraud": true, "score": 0.9, "reason": "odd"}', FraudAnswer)
    assert answer == FraudAnswer(fraud=True, score=0.9, reason="odd")


def test_an_integer_score_is_a_number() -> None:
    assert parse_answer('{"fraud": false, "score": 0, "reason": ""}', FraudAnswer).score == 0


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        None,
        "The order looks fine to me.",
        '```json\n{"fraud": false, "score": 0.1, "reason": "ok"}\n```',
        '{"fraud": false,',
    ],
)
def test_text_that_is_not_a_json_document_is_not_json(text: str | None) -> None:
    with pytest.raises(AiNotJson):
        parse_answer(text, FraudAnswer)


@pytest.mark.parametrize(
    ("text", "schema"),
    [
        ('{"verdict": "approve"}', FraudAnswer),
        ('{"fraud": "no", "score": 0.1, "reason": "ok"}', FraudAnswer),
        ('{"fraud": false, "score": 7, "reason": "ok"}', FraudAnswer),
        ('{"fraud": false, "score": -0.5, "reason": "ok"}', FraudAnswer),
        ('["b001"]', SuggestionAnswer),
        ('{"book_ids": "b001"}', SuggestionAnswer),
        ('{"book_ids": [1, 2]}', SuggestionAnswer),
    ],
)
def test_json_of_the_wrong_shape_is_a_schema_mismatch(text: str, schema: type[BaseModel]) -> None:
    with pytest.raises(AiSchemaMismatch):
        parse_answer(text, schema)
