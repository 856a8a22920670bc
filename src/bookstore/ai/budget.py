"""The per-order AI budget.

A whole checkout may wait at most `ai_order_budget_s` on the AI, across
fraud detection (events d, e) and suggestions (event f). The time spent so
far travels with the vector clock (`ClockUpdate.ai_spent_s`), so the budget
holds across processes; once it is spent, the remaining checks go straight
to their fallbacks.
"""

from __future__ import annotations

import time


class AiBudget:
    def __init__(self, total_s: float, spent_s: float = 0.0) -> None:
        self.total_s = total_s
        self.spent_s = spent_s

    def remaining(self) -> float:
        """Seconds the order may still wait on the AI (never negative)."""
        return max(0.0, self.total_s - self.spent_s)

    def spend(self, seconds: float) -> None:
        self.spent_s += max(0.0, seconds)

    def absorb(self, spent_elsewhere_s: float) -> None:
        """Take in what a peer reported as spent (the larger total wins)."""
        self.spent_s = max(self.spent_s, spent_elsewhere_s)

    def timer(self) -> _Timer:
        """`with budget.timer(): ...` charges the elapsed time to the budget."""
        return _Timer(self)


class _Timer:
    def __init__(self, budget: AiBudget) -> None:
        self._budget = budget
        self._start = 0.0

    def __enter__(self) -> _Timer:
        self._start = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self._budget.spend(time.monotonic() - self._start)
