"""Helpers for the AI tests: settings pointing at a fake, orders to judge."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from bookstore.ai.client import AiModel, AiRequest, M
from bookstore.cards import summarize_card
from bookstore.pb import checkout_pb2, common_pb2
from bookstore.settings import Settings

CARD_NUMBER = "4111111111111111"
CVV = "737"
KEY = "test-key-not-secret"
# Deadlines for answers that should arrive (generous: the machine may be busy),
# and the budget for tests that make the fake hang (short: the test waits it out).
CALL_S = 5.0
BUDGET_S = 10.0
HANG_BUDGET_S = 0.5


def ai_settings(
    base_url: str,
    *,
    call_timeout_s: float = 5.0,
    budget_s: float = 10.0,
    failures: int = 3,
    cooldown_s: float = 30.0,
) -> Settings:
    """Settings with the AI on, pointed at `base_url` (a fake).

    Deadlines are generous: tests that want a timeout give a short budget.
    """
    return replace(
        Settings(),
        gemini_api_key=KEY,
        gemini_base_url=base_url,
        ai_call_timeout_s=call_timeout_s,
        ai_order_budget_s=budget_s,
        ai_breaker_failures=failures,
        ai_breaker_cooldown_s=cooldown_s,
    )


def make_order(
    *,
    comment: str = "Please gift wrap it.",
    contact: str = "ada@example.org",
    items: tuple[tuple[str, int], ...] = (("b001", 1),),
    country: str = "US",
    card_number: str = CARD_NUMBER,
) -> checkout_pb2.OrderData:
    """An order as fraud detection receives it, plus (wrongly) the full card,
    so tests can prove the AI never gets more than the card summary."""
    return checkout_pb2.OrderData(
        order_id=common_pb2.OrderId(value="order-1"),
        items=[common_pb2.OrderItem(book_id=b, quantity=q) for b, q in items],
        customer=checkout_pb2.Customer(name="Ada Lovelace", contact=contact),
        billing_address=checkout_pb2.Address(
            street="1 Analytical Way", city="Boston", state="MA", zip="02110", country=country
        ),
        terms_accepted=True,
        card=checkout_pb2.Card(number=card_number, expiration="12/30", cvv=CVV),
        card_summary=summarize_card(card_number, "12/30"),
        user_comment=comment,
        client=checkout_pb2.ClientInfo(
            device_type="desktop",
            device_os="Linux",
            browser_name="Firefox",
            device_language="en-US",
        ),
    )


@dataclass
class DeadlineRecorder:
    """An AI model that passes every call on and records the deadline it was given:
    what a caller grants the AI is read here, not timed on a clock."""

    model: AiModel
    deadlines: list[float] = field(default_factory=list)

    async def generate(self, request: AiRequest[M], timeout_s: float) -> M:
        self.deadlines.append(timeout_s)
        return await self.model.generate(request, timeout_s)
