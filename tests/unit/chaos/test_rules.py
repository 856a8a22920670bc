"""The message-fault rule table: drop, delay, refuse; per pair; partitions; heal."""

from __future__ import annotations

import pytest

from bookstore.chaos.rules import ANY, Action, Rule, RuleTable

E1, E3, Q = "order-executor-1", "order-executor-3", "order-queue"


def test_no_rule_delivers() -> None:
    assert RuleTable().verdict(E3, Q) is None


def test_a_rule_applies_to_its_pair_in_its_direction_only() -> None:
    table = RuleTable([Rule(E3, Q, Action.DROP)])
    assert table.verdict(E3, Q) == Rule(E3, Q, Action.DROP)
    assert table.verdict(Q, E3) is None
    assert table.verdict(E1, Q) is None


@pytest.mark.parametrize("action", list(Action))
def test_each_action_is_kept(action: Action) -> None:
    table = RuleTable([Rule(E3, Q, action, delay_ms=250 if action is Action.DELAY else 0)])
    rule = table.verdict(E3, Q)
    assert rule is not None and rule.action is action


def test_a_pair_rule_wins_over_a_wildcard() -> None:
    table = RuleTable([Rule(E3, ANY, Action.DROP), Rule(E3, Q, Action.DELAY, 100)])
    assert table.verdict(E3, Q) == Rule(E3, Q, Action.DELAY, 100)
    assert table.verdict(E3, E1) == Rule(E3, ANY, Action.DROP)


def test_partition_drops_both_ways_across_the_sides_only() -> None:
    table = RuleTable()
    table.partition([E1, "order-executor-2"], [E3, "order-executor-4"])
    assert len(table) == 8
    for a, b in ((E1, E3), (E3, E1), ("order-executor-2", "order-executor-4")):
        rule = table.verdict(a, b)
        assert rule is not None and rule.action is Action.DROP
    assert table.verdict(E1, "order-executor-2") is None
    assert table.verdict(E3, "order-executor-4") is None
    assert table.verdict(E1, Q) is None


def test_a_process_on_both_sides_is_refused() -> None:
    with pytest.raises(ValueError, match="both sides"):
        RuleTable().partition([E1, E3], [E3])


def test_isolate_cuts_a_process_off_from_everyone() -> None:
    table = RuleTable()
    table.isolate(E3)
    for other in (E1, Q, "orchestrator"):
        assert table.verdict(E3, other) is not None
        assert table.verdict(other, E3) is not None
    assert table.verdict(E1, Q) is None


def test_heal_removes_every_rule_naming_the_process_and_no_other() -> None:
    table = RuleTable([Rule(E1, Q, Action.REFUSE)])
    table.isolate(E3)
    gone = table.heal(E3)
    assert len(gone) == 2
    assert table.verdict(E3, Q) is None and table.verdict(Q, E3) is None
    assert table.verdict(E1, Q) == Rule(E1, Q, Action.REFUSE)


def test_heal_all_removes_everything() -> None:
    table = RuleTable([Rule(E1, Q, Action.REFUSE)])
    table.partition([E1], [E3])
    table.heal_all()
    assert len(table) == 0 and table.verdict(E1, Q) is None


def test_the_table_survives_its_json_form() -> None:
    table = RuleTable([Rule(E1, Q, Action.DELAY, 40), Rule(Q, E3, Action.REFUSE)])
    assert RuleTable.from_json(table.as_json()).rules() == table.rules()


def test_rules_refuse_nonsense() -> None:
    with pytest.raises(ValueError):
        Rule(E1, E1, Action.DROP)
    with pytest.raises(ValueError):
        Rule(E1, Q, Action.DELAY, -1)
