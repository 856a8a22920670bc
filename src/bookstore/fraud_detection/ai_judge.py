"""The AI fraud judge (events d and e): the rules first, then the AI.

- The rules run first. A rules rejection stands: the AI is not asked, so no
  answer (and no customer comment) can clear it.
- Otherwise the AI is asked (within the order's budget, behind the breaker).
  An AI "fraud" rejects the order with the AI's reason; an AI "clean" approves.
- Any failure (timeout, HTTP error, not JSON, wrong schema, circuit open,
  budget spent...) returns the rules' verdict, answered_by "fallback: <why>".
"""

from __future__ import annotations

import logging
from typing import Protocol

from bookstore.ai.breaker import CircuitBreaker
from bookstore.ai.budget import AiBudget
from bookstore.ai.calls import ask
from bookstore.ai.client import AiModel, AiRequest
from bookstore.ai.errors import AiError
from bookstore.catalogue import Catalogue, load_catalogue
from bookstore.fraud_detection.ai_prompts import (
    FraudAnswer,
    card_fraud_request,
    user_fraud_request,
)
from bookstore.fraud_detection.rules import Verdict
from bookstore.logs import redact
from bookstore.pb import checkout_pb2
from bookstore.telemetry import metrics

log = logging.getLogger(__name__)

DEFAULT_REASON = "The order was flagged as possible fraud."
MAX_REASON = 200


class Rules(Protocol):
    def user_verdict(self, order: checkout_pb2.OrderData) -> Verdict: ...

    def card_verdict(self, order: checkout_pb2.OrderData) -> Verdict: ...


def customer_reason(text: str) -> str:
    """The AI's reason as a customer may read it: one short line, no card digits."""
    cleaned = redact(" ".join(text.split()))[:MAX_REASON].strip()
    return cleaned or DEFAULT_REASON


class AiFraudJudge:
    """A FraudJudge: RulesJudge's rules, then Gemini, with the rules as fallback."""

    def __init__(
        self,
        rules: Rules,
        ai: AiModel,
        breaker: CircuitBreaker,
        *,
        call_timeout_s: float = 2.0,
        catalogue: Catalogue | None = None,
    ) -> None:
        self.rules = rules
        self.ai = ai
        self.breaker = breaker
        self.call_timeout_s = call_timeout_s
        self.catalogue = catalogue or load_catalogue()

    async def check_user(self, order: checkout_pb2.OrderData, budget: AiBudget) -> Verdict:
        verdict = self.rules.user_verdict(order)
        if verdict.fraud:
            return verdict
        request = user_fraud_request(order, self.catalogue)
        return await self._ask(order, verdict, request, budget, "user")

    async def check_card(self, order: checkout_pb2.OrderData, budget: AiBudget) -> Verdict:
        verdict = self.rules.card_verdict(order)
        if verdict.fraud:
            return verdict
        return await self._ask(order, verdict, card_fraud_request(order), budget, "card")

    async def _ask(
        self,
        order: checkout_pb2.OrderData,
        rules_verdict: Verdict,
        request: AiRequest[FraudAnswer],
        budget: AiBudget,
        check: str,
    ) -> Verdict:
        order_id = order.order_id.value
        try:
            answer = await ask(self.ai, self.breaker, budget, request, self.call_timeout_s)
        except AiError as exc:
            metrics.count_ai(check, exc.kind)
            log.info("order=%s %s answered by rules: %s", order_id, request.label, exc)
            return Verdict(
                fraud=rules_verdict.fraud,
                score=rules_verdict.score,
                reason=rules_verdict.reason,
                answered_by=f"fallback: {exc.kind}",
            )
        metrics.count_ai(check, None)
        score = round(answer.score, 3)
        if answer.fraud:
            reason = customer_reason(answer.reason)
            log.info(
                "order=%s %s: ai says fraud (%.2f): %s", order_id, request.label, score, reason
            )
            return Verdict(fraud=True, score=score, reason=reason, answered_by="ai")
        return Verdict(fraud=False, score=score, reason="", answered_by="ai")
