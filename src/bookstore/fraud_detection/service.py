"""The fraud-detection service: events d (user-data fraud) and e (card fraud)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bookstore.ai import factory as ai_factory
from bookstore.ai.breaker import CircuitBreaker
from bookstore.ai.budget import AiBudget
from bookstore.cards import warn_if_development_key
from bookstore.choreography import server as choreography_server
from bookstore.choreography.engine import Participant
from bookstore.choreography.events import FD, EventResult, Handler
from bookstore.fraud_detection.rules import FraudJudge, RulesJudge, Verdict
from bookstore.pb import checkout_pb2
from bookstore.settings import Settings

if TYPE_CHECKING:
    from bookstore.ai.client import AiModel

NAME = FD


def make_judge(settings: Settings) -> FraudJudge:
    """The judge this service asks: the AI judge with a Gemini key, else the rules."""
    rules = RulesJudge()

    def ai_judge(model: AiModel, breaker: CircuitBreaker) -> FraudJudge:
        from bookstore.fraud_detection.ai_judge import AiFraudJudge

        return AiFraudJudge(rules, model, breaker, call_timeout_s=settings.ai_call_timeout_s)

    return ai_factory.choose(settings, rules, "fraud rules", ai_judge)


def _result(verdict: Verdict) -> EventResult:
    return EventResult(
        ok=not verdict.fraud,
        reason=verdict.reason or "The order was flagged as possible fraud."
        if verdict.fraud
        else "",
        answered_by=verdict.answered_by,
    )


def handlers(judge: FraudJudge) -> dict[str, Handler]:
    async def user_fraud(order: checkout_pb2.OrderData, budget: AiBudget) -> EventResult:
        return _result(await judge.check_user(order, budget))

    async def card_fraud(order: checkout_pb2.OrderData, budget: AiBudget) -> EventResult:
        return _result(await judge.check_card(order, budget))

    return {"d": user_fraud, "e": card_fraud}


def create_participant(settings: Settings, judge: FraudJudge | None = None) -> Participant:
    return choreography_server.participant(
        settings, NAME, handlers(judge if judge is not None else make_judge(settings))
    )


async def serve(settings: Settings, replica_id: int | None = None) -> None:
    warn_if_development_key()
    await choreography_server.serve(settings, create_participant(settings))
