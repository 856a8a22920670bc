"""A seed replays byte for byte: the same events in the same order, whatever the
process's string hashing."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from bookstore.simulation import runner


def test_a_replay_gives_the_same_trace_hash() -> None:
    first, again = runner.run(11), runner.run(11)
    assert first.trace == again.trace
    assert first.trace_hash == again.trace_hash
    assert runner.run(12).trace_hash != first.trace_hash


def test_another_process_replays_the_same_hash() -> None:
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-m", "bookstore", "simulate", "--seed", "11"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = re.search(r"trace hash ([0-9a-f]{16})", out)
    assert found is not None, out
    assert found.group(1) == runner.run(11).trace_hash
