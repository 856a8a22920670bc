"""One check's call: the order's budget, at most one retry, the circuit breaker."""

from __future__ import annotations

import time

import pytest
from ai_support import BUDGET_S, CALL_S, DeadlineRecorder
from fakes.gemini import FakeGemini, Reply

from bookstore.ai.breaker import CircuitBreaker
from bookstore.ai.budget import AiBudget
from bookstore.ai.calls import ask
from bookstore.ai.client import AiRequest, GeminiModel
from bookstore.ai.errors import (
    AiBudgetSpent,
    AiCircuitOpen,
    AiConnectionError,
    AiHttpError,
    AiNotJson,
    AiTimeout,
)
from bookstore.fraud_detection.ai_prompts import FraudAnswer

REQUEST = AiRequest("user-fraud", "You judge orders.", "The data.", FraudAnswer)
CLEAN = Reply.json({"fraud": False, "score": 0.1, "reason": "fine"})


async def test_an_answer_charges_its_time_to_the_budget(
    fake: FakeGemini, model: GeminiModel, breaker: CircuitBreaker
) -> None:
    fake.always(CLEAN)
    budget = AiBudget(BUDGET_S)
    started = time.monotonic()
    answer = await ask(model, breaker, budget, REQUEST, call_timeout_s=CALL_S)
    waited = time.monotonic() - started
    assert answer.score == 0.1
    assert 0 < budget.spent_s <= waited  # charged, and no more than it waited


async def test_a_spent_budget_does_not_call_the_ai(
    fake: FakeGemini, model: GeminiModel, breaker: CircuitBreaker
) -> None:
    fake.always(CLEAN)
    with pytest.raises(AiBudgetSpent):
        await ask(model, breaker, AiBudget(3.0, spent_s=3.0), REQUEST, call_timeout_s=CALL_S)
    assert fake.requests == []


async def test_the_deadline_is_what_the_budget_has_left(
    fake: FakeGemini, model: GeminiModel, breaker: CircuitBreaker
) -> None:
    fake.always(Reply.hang())
    budget = AiBudget(3.0, spent_s=2.7)
    recorder = DeadlineRecorder(model)
    with pytest.raises(AiTimeout):
        await ask(recorder, breaker, budget, REQUEST, call_timeout_s=CALL_S)
    assert recorder.deadlines == [pytest.approx(0.3)]  # the budget's 0.3 s, not the call's 5 s
    assert budget.remaining() < 0.05
    assert len(fake.requests) == 1  # a timeout is not retried


async def test_a_server_error_is_retried_once(
    fake: FakeGemini, model: GeminiModel, breaker: CircuitBreaker
) -> None:
    fake.then(Reply.status(500))
    fake.always(CLEAN)
    answer = await ask(model, breaker, AiBudget(BUDGET_S), REQUEST, call_timeout_s=CALL_S)
    assert answer.fraud is False
    assert len(fake.requests) == 2


async def test_a_dropped_connection_is_retried_once_then_given_up(
    fake: FakeGemini, model: GeminiModel, breaker: CircuitBreaker
) -> None:
    fake.always(Reply.close())
    with pytest.raises(AiConnectionError):
        await ask(model, breaker, AiBudget(BUDGET_S), REQUEST, call_timeout_s=CALL_S)
    assert len(fake.requests) == 2


@pytest.mark.parametrize("reply", [Reply.status(429), Reply.text("prose"), Reply.status(400)])
async def test_rate_limits_and_bad_answers_are_not_retried(
    fake: FakeGemini, model: GeminiModel, breaker: CircuitBreaker, reply: Reply
) -> None:
    fake.always(reply)
    with pytest.raises((AiHttpError, AiNotJson)):
        await ask(model, breaker, AiBudget(BUDGET_S), REQUEST, call_timeout_s=CALL_S)
    assert len(fake.requests) == 1


async def test_no_retry_when_the_first_call_spent_the_budget(
    fake: FakeGemini, model: GeminiModel, breaker: CircuitBreaker
) -> None:
    fake.always(Reply.status(503))
    budget = _SpentByOneCall(BUDGET_S)
    with pytest.raises(AiHttpError) as info:
        await ask(model, breaker, budget, REQUEST, call_timeout_s=CALL_S)
    assert info.value.kind == "http 503"  # the first failure, not "budget spent"
    assert len(fake.requests) == 1


async def test_no_retry_when_the_first_failure_opened_the_circuit(
    fake: FakeGemini, model: GeminiModel
) -> None:
    breaker = CircuitBreaker(failures=1, cooldown_s=60.0)
    fake.always(Reply.status(502))
    with pytest.raises(AiHttpError) as info:
        await ask(model, breaker, AiBudget(BUDGET_S), REQUEST, call_timeout_s=CALL_S)
    assert info.value.kind == "http 502"
    assert len(fake.requests) == 1


async def test_an_open_circuit_stops_calling_the_ai(fake: FakeGemini, model: GeminiModel) -> None:
    breaker = CircuitBreaker(failures=2, cooldown_s=60.0)
    fake.always(Reply.status(429))
    for _ in range(2):
        with pytest.raises(AiHttpError):
            await ask(model, breaker, AiBudget(BUDGET_S), REQUEST, call_timeout_s=CALL_S)
    assert breaker.state == "open"
    fake.always(CLEAN)
    with pytest.raises(AiCircuitOpen):
        await ask(model, breaker, AiBudget(BUDGET_S), REQUEST, call_timeout_s=CALL_S)
    assert len(fake.requests) == 2


async def test_after_the_cooldown_one_probe_closes_the_circuit(
    fake: FakeGemini, model: GeminiModel
) -> None:
    now = [0.0]
    breaker = CircuitBreaker(failures=1, cooldown_s=5.0, now=lambda: now[0])
    fake.always(Reply.status(429))
    with pytest.raises(AiHttpError):
        await ask(model, breaker, AiBudget(BUDGET_S), REQUEST, call_timeout_s=CALL_S)
    now[0] = 5.0
    fake.always(CLEAN)
    assert (
        await ask(model, breaker, AiBudget(BUDGET_S), REQUEST, call_timeout_s=CALL_S)
    ).score == 0.1
    assert breaker.state == "closed"


async def test_a_refused_key_is_a_clear_warning(
    fake: FakeGemini,
    model: GeminiModel,
    breaker: CircuitBreaker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake.always(Reply.status(400, "API key not valid. Please pass a valid API key."))
    with pytest.raises(AiHttpError):
        await ask(model, breaker, AiBudget(BUDGET_S), REQUEST, call_timeout_s=CALL_S)
    [warning] = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "GEMINI_API_KEY" in warning.getMessage()
    assert "test-key" not in caplog.text


class _SpentByOneCall(AiBudget):
    """A budget that any one call spends whole, however fast or slow the machine is."""

    def spend(self, seconds: float) -> None:
        super().spend(self.total_s)
