"""AI on or off, decided once per service at start-up.

With a key (GEMINI_API_KEY or GOOGLE_API_KEY) and sane AI settings, `choose`
gives a service its AI judge or recommender; otherwise the rules / catalogue
ones, exactly as without this package. Either way ONE start-up line says which
(never the key).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from bookstore.ai.breaker import CircuitBreaker
from bookstore.settings import Settings

if TYPE_CHECKING:
    from bookstore.ai.client import AiModel

log = logging.getLogger("bookstore.ai")

L = TypeVar("L")
A = TypeVar("A")


def _model(settings: Settings, fallback: str) -> AiModel | None:
    """The AI model to use, or None (after saying why) when the AI is off."""
    if not settings.ai_enabled:
        log.info("AI off: GEMINI_API_KEY is not set; %s answer", fallback)
        return None
    # Imported only when the AI is on: without a key the SDK is never loaded.
    from bookstore.ai.client import settings_problem, shared_model

    problem = settings_problem(settings)
    if problem is not None:
        log.error("AI off: %s; %s answer", problem, fallback)
        return None
    try:
        model = shared_model(settings)
    except Exception as exc:  # the SDK refused its configuration
        log.error("AI off: the Gemini client could not be made (%s); %s answer", exc, fallback)
        return None
    where = settings.gemini_base_url or "Google's endpoint"
    log.info(
        "AI on: %s at %s (api %s), %.1f s per call, %.1f s per order; fallback: %s",
        settings.gemini_model,
        where,
        settings.gemini_api_version,
        settings.ai_call_timeout_s,
        settings.ai_order_budget_s,
        fallback,
    )
    return model


def choose(
    settings: Settings,
    local: L,
    fallback: str,
    ai: Callable[[AiModel, CircuitBreaker], A],
) -> L | A:
    """What a service runs: `local` with the AI off, else `ai(model, breaker)`.

    `ai` imports the AI caller it builds, so without a key the SDK never loads.
    """
    model = _model(settings, fallback)
    if model is None:
        return local
    breaker = CircuitBreaker(settings.ai_breaker_failures, settings.ai_breaker_cooldown_s)
    return ai(model, breaker)
