"""Every bug of the zoo is caught. The seeds are the first three of 0..499 that
catch each mutant (`bookstore simulate --mutant NAME --seeds 500`, which stops at
the first); each must still fail, and without the mutant pass."""

from __future__ import annotations

import pytest

from bookstore import cli
from bookstore.simulation import mutants, runner

CATCHING_SEEDS = {
    mutants.IGNORES_EPOCH: (20, 102, 151),
    mutants.ACKS_BEFORE_MAJORITY: (0, 1, 2),
    mutants.ACKS_BEFORE_FSYNC: (0, 1, 2),
    mutants.YIELDS_TO_LOWER: (20, 42, 50),
    mutants.SKIPS_FINAL_CHECK: (0, 2, 3),
    mutants.COMMITS_ON_MISSING_VOTE: (2, 3, 7),
    mutants.SKIPS_DECISION_LOG: (0, 1, 2),
    mutants.APPROVES_CANCELLED: (0, 2, 3),
    mutants.QUEUE_IGNORES_FENCING: (0, 4, 20),
}


def test_every_mutant_has_its_catching_seeds() -> None:
    assert set(CATCHING_SEEDS) == set(mutants.MUTANTS)
    assert len(mutants.MUTANTS) >= 8
    assert all(seed < 500 for seeds in CATCHING_SEEDS.values() for seed in seeds)


@pytest.mark.parametrize("mutant", sorted(CATCHING_SEEDS))
def test_the_mutant_is_caught_on_its_seeds(mutant: str) -> None:
    for seed in CATCHING_SEEDS[mutant]:
        caught = runner.run(seed, mutant=mutant)
        assert not caught.ok, (mutant, seed)
        assert runner.run(seed).ok, seed


@pytest.mark.parametrize("mutant", sorted(CATCHING_SEEDS))
def test_the_command_exits_non_zero_with_the_failing_seed(
    mutant: str, capsys: pytest.CaptureFixture[str]
) -> None:
    first = CATCHING_SEEDS[mutant][0]
    argv = ["simulate", "--seeds", str(first + 1), "--mutant", mutant]
    assert cli.main(argv) == 1
    assert f"FAILED: seed {first} " in capsys.readouterr().out
