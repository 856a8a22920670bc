"""The Gemini client: one google-genai async client per process.

Every call asks for structured output: `response_mime_type` JSON and a
`response_schema` built from a pydantic model, with the API version pinned
(`GEMINI_API_VERSION`). The answer is checked here, strictly: text that is
not a JSON document (prose, a fenced block) or that does not match the model
is an error, never guessed at.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar
from urllib.parse import urlsplit

from google import genai
from google.genai import types
from pydantic import BaseModel, ValidationError

from bookstore.ai.errors import AiNotJson, AiSchemaMismatch, translated
from bookstore.settings import Settings

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

MAX_OUTPUT_TOKENS = 256
BACKSTOP_MARGIN_S = 1.0


@dataclass(frozen=True)
class AiRequest(Generic[M]):
    """One question: fixed instructions, the data, and the answer's shape."""

    label: str  # "user-fraud", "card-fraud", "suggestions" (for logs)
    system: str
    prompt: str
    schema: type[M]


class AiModel(Protocol):
    async def generate(self, request: AiRequest[M], timeout_s: float) -> M:
        """One attempt within `timeout_s`; raises `AiError` on any failure."""
        ...


def parse_answer(text: str | None, schema: type[M]) -> M:
    """The answer as `schema`, or AiNotJson / AiSchemaMismatch."""
    if not text or not text.strip():
        raise AiNotJson("empty answer")
    try:
        data = json.loads(text)
    except ValueError:
        raise AiNotJson(f"{len(text)} characters of text") from None
    try:
        return schema.model_validate(data, strict=True)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) or "answer" for e in exc.errors())
        raise AiSchemaMismatch(fields) from None


def _answer_text(response: types.GenerateContentResponse) -> str | None:
    """The text of the first candidate (without the SDK's multi-part warnings)."""
    if not response.candidates:
        return None
    content = response.candidates[0].content
    if content is None or not content.parts:
        return None
    return "".join(part.text for part in content.parts if part.text and not part.thought)


def settings_problem(settings: Settings) -> str | None:
    """Why the AI settings cannot work (checked at start-up), or None."""
    key = settings.gemini_api_key
    if not key.isascii() or not key.isprintable() or key != key.strip() or " " in key:
        return "GEMINI_API_KEY is malformed (spaces or non-ASCII characters)"
    if settings.gemini_base_url:
        parts = urlsplit(settings.gemini_base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return f"GEMINI_BASE_URL={settings.gemini_base_url!r} is not an http(s) URL"
    if not settings.gemini_model.strip():
        return "GEMINI_MODEL is empty"
    if settings.ai_call_timeout_s <= 0 or settings.ai_order_budget_s <= 0:
        return "AI_CALL_TIMEOUT_S and AI_ORDER_BUDGET_S must be positive"
    return None


class GeminiModel:
    """google-genai's async client, configured from the settings."""

    def __init__(self, settings: Settings) -> None:
        self.model = settings.gemini_model
        self._client = genai.Client(
            api_key=settings.gemini_api_key,
            http_options=types.HttpOptions(
                base_url=settings.gemini_base_url or None,
                api_version=settings.gemini_api_version,
                # A backstop only: each call runs under its own deadline (generate).
                timeout=int((settings.ai_call_timeout_s + BACKSTOP_MARGIN_S) * 1000),
            ),
        )
        self._aio = self._client.aio
        # No "thinking" for a short structured verdict: it only adds latency.
        self._thinking = (
            types.ThinkingConfig(thinking_budget=0)
            if self.model.startswith("gemini-2.5-flash")
            else None
        )

    async def generate(self, request: AiRequest[M], timeout_s: float) -> M:
        config = types.GenerateContentConfig(
            system_instruction=request.system,
            response_mime_type="application/json",
            response_schema=request.schema,
            temperature=0.0,
            candidate_count=1,
            max_output_tokens=MAX_OUTPUT_TOKENS,
            thinking_config=self._thinking,
        )
        with translated():
            async with asyncio.timeout(timeout_s):
                response = await self._aio.models.generate_content(
                    model=self.model, contents=request.prompt, config=config
                )
        return parse_answer(_answer_text(response), request.schema)

    async def aclose(self) -> None:
        await self._aio.aclose()


_shared: dict[tuple[str, str, str, str, float], GeminiModel] = {}


def shared_model(settings: Settings) -> GeminiModel:
    """The process's one client for these settings (made on first use)."""
    key = (
        settings.gemini_api_key,
        settings.gemini_base_url,
        settings.gemini_api_version,
        settings.gemini_model,
        settings.ai_call_timeout_s,
    )
    if key not in _shared:
        _shared[key] = GeminiModel(settings)
    return _shared[key]
