"""The message-fault rule table: pure data, no sockets, no clocks.

A rule says what happens to messages going from process `src` to process `dst`
(process names as `bookstore up` shows them: "order-executor-3", "order-queue"):

    drop    the message never arrives (a call waits out its deadline)
    delay   the message arrives `delay_ms` later
    refuse  the receiver answers UNAVAILABLE at once ("down")

"*" as `src` or `dst` matches every process. A pair's own rule wins over a
wildcard rule. A partition is `drop` both ways between every pair across two
sides; isolating a process is a partition between it and everyone ("*").
Healing a process removes every rule that names it; `heal_all` removes all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

ANY = "*"


class Action(StrEnum):
    DROP = "drop"
    DELAY = "delay"
    REFUSE = "refuse"


@dataclass(frozen=True)
class Rule:
    src: str
    dst: str
    action: Action
    delay_ms: int = 0

    def __post_init__(self) -> None:
        if self.delay_ms < 0:
            raise ValueError("delay_ms must not be negative")
        if self.src == self.dst:
            raise ValueError(f"a rule needs two different processes, not {self.src} twice")

    def describe(self) -> str:
        extra = f" {self.delay_ms} ms" if self.action is Action.DELAY else ""
        return f"{self.action.value}{extra} {self.src} -> {self.dst}"

    def as_json(self) -> dict[str, Any]:
        return {
            "src": self.src,
            "dst": self.dst,
            "action": self.action.value,
            "delayMs": self.delay_ms,
        }

    @staticmethod
    def from_json(raw: Mapping[str, Any]) -> Rule:
        return Rule(
            str(raw["src"]), str(raw["dst"]), Action(raw["action"]), int(raw.get("delayMs", 0))
        )


class RuleTable:
    """Rules keyed by (src, dst); at most one rule per ordered pair."""

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        self._rules: dict[tuple[str, str], Rule] = {}
        for rule in rules:
            self.add(rule)

    def __len__(self) -> int:
        return len(self._rules)

    def rules(self) -> list[Rule]:
        return sorted(self._rules.values(), key=lambda r: (r.src, r.dst))

    def add(self, rule: Rule) -> None:
        self._rules[(rule.src, rule.dst)] = rule

    def verdict(self, src: str, dst: str) -> Rule | None:
        """The rule for a message from `src` to `dst`, or None: deliver it."""
        for key in ((src, dst), (src, ANY), (ANY, dst)):
            rule = self._rules.get(key)
            if rule is not None:
                return rule
        return None

    def partition(self, side_a: Iterable[str], side_b: Iterable[str]) -> list[Rule]:
        """Drop every message across the two sides, both ways; the rules added."""
        a, b = set(side_a), set(side_b)
        if a & b:
            raise ValueError(f"on both sides: {', '.join(sorted(a & b))}")
        added = [
            Rule(src, dst, Action.DROP)
            for x in sorted(a)
            for y in sorted(b)
            for src, dst in ((x, y), (y, x))
        ]
        for rule in added:
            self.add(rule)
        return added

    def isolate(self, name: str) -> list[Rule]:
        """Cut `name` off from every other process."""
        return self.partition([name], [ANY])

    def heal(self, name: str) -> list[Rule]:
        """Remove every rule naming `name`; the rules removed."""
        gone = [r for r in self._rules.values() if name in (r.src, r.dst)]
        for rule in gone:
            del self._rules[(rule.src, rule.dst)]
        return gone

    def heal_all(self) -> list[Rule]:
        gone = self.rules()
        self._rules.clear()
        return gone

    def as_json(self) -> list[dict[str, Any]]:
        return [r.as_json() for r in self.rules()]

    @staticmethod
    def from_json(raw: Iterable[Mapping[str, Any]]) -> RuleTable:
        return RuleTable(Rule.from_json(r) for r in raw)
