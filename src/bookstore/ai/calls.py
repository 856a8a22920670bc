"""How one check asks the AI: within the order's budget, behind the breaker.

- The call's deadline is min(AI_CALL_TIMEOUT_S, what the order's budget has
  left); with less than MIN_CALL_S left the AI is not asked ("budget spent").
- An open circuit means the AI is not asked ("circuit open").
- At most one retry, immediately, only after a failure of the server or the
  connection (HTTP 5xx, refused or dropped connection), and only if the budget
  and the breaker still allow a call (else the first failure is the answer).
  A timeout is not retried: the budget has paid for it.
- Every second spent waiting is charged to the budget, failures included.
"""

from __future__ import annotations

import logging

from bookstore.ai.breaker import CircuitBreaker
from bookstore.ai.budget import AiBudget
from bookstore.ai.client import AiModel, AiRequest, M
from bookstore.ai.errors import AiBudgetSpent, AiCircuitOpen, AiError, AiHttpError

log = logging.getLogger(__name__)

MIN_CALL_S = 0.05  # below this, a call cannot succeed: go straight to the fallback
ATTEMPTS = 2  # the first call and at most one retry
_REFUSED = frozenset({400, 401, 403, 404})  # a bad key or model name, not an outage


async def ask(
    model: AiModel,
    breaker: CircuitBreaker,
    budget: AiBudget,
    request: AiRequest[M],
    call_timeout_s: float,
) -> M:
    """The AI's answer to `request`, or an `AiError` saying why there is none."""
    failed: AiError | None = None  # the first attempt's error, when retrying
    for attempt in range(1, ATTEMPTS + 1):
        remaining = budget.remaining()
        if remaining < MIN_CALL_S:
            raise failed or AiBudgetSpent(f"{remaining:.3f} s left")
        if not breaker.allow():
            raise failed or AiCircuitOpen()
        try:
            with budget.timer():
                answer = await model.generate(request, min(call_timeout_s, remaining))
        except AiError as exc:
            if exc.counts_as_failure:
                breaker.record_failure()
            else:
                breaker.release()
            if isinstance(exc, AiHttpError) and exc.status in _REFUSED:
                log.warning(
                    "ai %s: Gemini refused the request (%s); check GEMINI_API_KEY and "
                    "GEMINI_MODEL. The fallback answers.",
                    request.label,
                    exc.kind,
                )
            else:
                log.info("ai %s attempt %d failed: %s", request.label, attempt, exc)
            if attempt < ATTEMPTS and exc.retryable:
                failed = exc
                continue
            raise
        except BaseException:
            breaker.release()  # cancelled: no verdict on the AI
            raise
        breaker.record_success()
        return answer
    raise AssertionError("unreachable")  # pragma: no cover
