"""`bookstore simulate`: what it prints, and its exit code."""

from __future__ import annotations

from pathlib import Path

import pytest

from bookstore import cli
from bookstore.simulation import mutants


def test_a_passing_seed_prints_its_checkouts_faults_and_hash(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["simulate", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "seed 3: 50 checkouts" in out
    assert "trace hash" in out
    assert "checkouts per CPU-second" in out


def test_the_bug_zoo_is_listed(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["simulate", "--list-mutants"]) == 0
    out = capsys.readouterr().out
    assert len(mutants.MUTANTS) >= 8
    for name in mutants.MUTANTS:
        assert name in out


def test_a_failing_seed_exits_non_zero_shrunk_and_drawn(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    page = tmp_path / "failure.html"
    argv = ["simulate", "--seeds", "5", "--mutant", mutants.ACKS_BEFORE_FSYNC]
    assert cli.main([*argv, "--html", str(page)]) == 1
    out = capsys.readouterr().out
    assert "FAILED: seed 0" in out
    assert "shortest failing prefix" in out
    assert "<svg" in page.read_text()


def test_an_unknown_mutant_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["simulate", "--mutant", "no-such-bug"]) == 2
