"""Without a mutant every seed passes: 200 seeds of 50 checkouts, each through at
least three faults, with every invariant checked."""

from __future__ import annotations

import pytest

from bookstore.simulation import runner

SEEDS = 200


@pytest.mark.timeout(1800)  # about 20 CPU-seconds; a shared machine may give few of them
def test_200_seeds_pass_every_invariant() -> None:
    failed = []
    checkouts = faults = 0
    for seed in range(SEEDS):
        result = runner.run(seed)
        checkouts += result.checkouts
        faults += len(result.faults)
        assert len(result.faults) >= 3
        if not result.ok:
            failed.append((seed, result.violation))
    assert failed == []
    assert checkouts == SEEDS * runner.CHECKOUTS
    print(f"{SEEDS} seeds: {checkouts} checkouts, {faults} faults")


def test_a_seed_runs_every_kind_of_checkout() -> None:
    result = runner.run(0)
    kinds = {plan.kind for plan in runner.build(0, runner.CHECKOUTS, "")[1]}
    assert kinds == {"approved", "rejected", "out-of-stock", "declined", "abandoned"}
    assert result.ok, result.violation
    assert 0 < result.stats["executed"] <= result.stats["approved"]


def test_seeds_install_snapshots() -> None:
    """The simulated logs are compacted, so a backup that fell behind them (a
    partition, a crash) catches up from a snapshot: seeds 2, 12 and 16 see one each."""
    installed = 0
    for seed in (2, 12, 16):
        result = runner.run(seed)
        assert result.ok, (seed, result.violation)
        installed += result.stats.get("snapshots installed", 0)
    assert installed > 0


@pytest.mark.timeout(120)  # before its fix this seed never ended (4 GB in 10 CPU-minutes)
def test_a_backup_waiting_for_its_snapshot_sets_off_no_append_storm() -> None:
    """Seed 482 found it: while a snapshot was on its way to a backup, the primary
    counted that backup as behind, so each of its refusals made a broadcast to every
    backup, and each broadcast more answers; the messages in flight grew without end
    at one instant of simulated time."""
    result = runner.run(482)
    assert result.ok, result.violation
    assert result.steps < 20_000  # about 3,000 now; the storm ran past 300,000 by 2.42 s
