"""A failing seed, shrunk: fewer faults and fewer checkouts while it still fails.

The run of the shrunk case stops at the step that broke an invariant, so its
trace is the shortest failing prefix of that schedule: the events that led to
the failure, in order.
"""

from __future__ import annotations

from bookstore.simulation import runner
from bookstore.simulation.runner import Result

SHOWN = 40  # the last events of the prefix printed


def shrink(failing: Result, mutant: str = "") -> Result:
    best = failing
    faults = list(failing.faults)
    i = 0
    while i < len(faults):
        trial = faults[:i] + faults[i + 1 :]
        result = runner.run(failing.seed, best.checkouts, mutant, only=trial)
        if result.ok:
            i += 1
        else:
            faults, best = trial, result
    checkouts = best.checkouts
    while checkouts > 1:
        result = runner.run(failing.seed, checkouts // 2, mutant, only=faults)
        if result.ok:
            break
        checkouts, best = checkouts // 2, result
    return best


def describe(result: Result, full: Result) -> str:
    faults = "; ".join(str(f) for f in result.faults) or "none"
    lines = [
        f"seed {result.seed} fails: {result.violation}",
        f"shrunk to {result.checkouts} checkouts and {len(result.faults)} faults ({faults})",
        f"shortest failing prefix: {len(result.trace)} events"
        f" (the unshrunk run failed after {len(full.trace)}); the last {SHOWN}:",
        *("  " + line for line in result.trace[-SHOWN:]),
    ]
    return "\n".join(lines)
