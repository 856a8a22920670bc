from __future__ import annotations

from bookstore.ai.budget import AiBudget
from bookstore.cards import summarize_card
from bookstore.fraud_detection import rules
from bookstore.fraud_detection.rules import RulesJudge
from bookstore.pb import checkout_pb2, common_pb2

JUDGE = RulesJudge()


def order(
    *,
    name: str = "Ada Lovelace",
    contact: str = "ada@example.com",
    country: str = "USA",
    items: list[tuple[str, int]] | None = None,
    card: str = "4111111111111111",
    language: str = "",
) -> checkout_pb2.OrderData:
    return checkout_pb2.OrderData(
        items=[common_pb2.OrderItem(title=t, quantity=q) for t, q in (items or [("Dune", 1)])],
        customer=checkout_pb2.Customer(name=name, contact=contact),
        billing_address=checkout_pb2.Address(street="1 Main", city="X", zip="1", country=country),
        terms_accepted=True,
        card_summary=summarize_card(card, "12/30"),
        client=checkout_pb2.ClientInfo(device_language=language),
    )


def test_an_ordinary_order_is_not_fraud() -> None:
    user, card = JUDGE.user_verdict(order()), JUDGE.card_verdict(order())
    assert not user.fraud and not card.fraud
    assert user.score == 0 and card.score == 0
    assert user.answered_by == card.answered_by == "rules"


def test_throw_away_email_is_fraud() -> None:
    verdict = JUDGE.user_verdict(order(contact="someone@Mailinator.com"))
    assert verdict.fraud and "email" in verdict.reason


def test_implausible_quantity_is_fraud() -> None:
    verdict = JUDGE.user_verdict(order(items=[("Dune", 30), ("Emma", 30)]))
    assert verdict.fraud and "50 books" in verdict.reason


def test_implausible_total_is_fraud() -> None:
    verdict = JUDGE.user_verdict(order(items=[("The Feynman Lectures on Physics", 21)]))
    assert verdict.fraud and "2000" in verdict.reason  # 21 x 99.00
    assert not JUDGE.user_verdict(order(items=[("The Feynman Lectures on Physics", 20)])).fraud


def test_bogus_names_are_fraud() -> None:
    assert JUDGE.user_verdict(order(name="1234 5678")).fraud
    assert JUDGE.user_verdict(order(name="Buy cheap at www.example.com")).fraud
    assert not JUDGE.user_verdict(order(name="Jaan Kross")).fraud


def test_language_mismatch_only_adds_to_the_score() -> None:
    verdict = JUDGE.user_verdict(order(country="Estonia", language="fr-FR"))
    assert not verdict.fraud and verdict.score == 0.2
    assert JUDGE.user_verdict(order(country="Estonia", language="et-EE")).score == 0
    combined = JUDGE.user_verdict(order(country="EE", language="fr-FR", name="42"))
    assert combined.fraud and combined.score == 1.0


def test_denied_cards_are_fraud_by_fingerprint() -> None:
    for number in ("4000000000000002", "4100000000000019", "5105105105105100"):
        verdict = JUDGE.card_verdict(order(card=number))
        assert (
            verdict.fraud and verdict.reason == "This card was declined. Please use another card."
        )
    assert len(rules.denied_fingerprints()) == len(rules.DENIED_CARDS) == 3


def test_bin_country_mismatch_alone_is_not_fraud() -> None:
    verdict = JUDGE.card_verdict(order(card="4111111111111111", country="Estonia"))
    assert not verdict.fraud and verdict.score == 0.5


def test_prepaid_card_rules() -> None:
    card = "4539780000000009"  # BIN 453978: prepaid, issued in Finland
    assert not JUDGE.card_verdict(order(card=card, country="Finland")).fraud
    high_total = JUDGE.card_verdict(order(card=card, country="Finland", items=[("Cosmos", 19)]))
    assert not high_total.fraud and high_total.score == 0.5  # 19 x 15.99 > 300
    many_copies = JUDGE.card_verdict(order(card=card, country="Finland", items=[("Cosmos", 25)]))
    assert many_copies.fraud and many_copies.score == 0.8
    assert "Prepaid" in many_copies.reason
    split = [("Cosmos", 15), ("cosmos", 10)]  # the same book on two lines
    split_copies = JUDGE.card_verdict(order(card=card, country="Finland", items=split))
    assert split_copies.fraud and split_copies.score == 0.8
    abroad = JUDGE.card_verdict(order(card=card, country="USA", items=[("Cosmos", 19)]))
    assert abroad.fraud and abroad.score == 1.0


def test_country_codes() -> None:
    assert rules.country_code(" united  States ") == "US"
    assert rules.country_code("ee") == "EE"
    assert rules.country_code("Atlantis") == ""


async def test_async_judge_delegates_to_the_rules() -> None:
    budget = AiBudget(3.0)
    denied = order(card="4000000000000002")
    assert (await JUDGE.check_card(denied, budget)) == JUDGE.card_verdict(denied)
    assert (await JUDGE.check_user(order(), budget)) == JUDGE.user_verdict(order())
    assert budget.spent_s == 0
