"""Simulated checkouts per CPU-second of `bookstore simulate`.

Runs seeds 0..N-1 (50 checkouts each, the default) in rounds and prints, per round,
the checkouts per CPU-second, with a calibration figure (a fixed pure-Python loop,
loops per CPU-second) taken beside it and the load average: on a shared machine
the ratio of the two is what compares across runs.

    flock /tmp/bench.lock .venv/bin/python bench/simulate_bench.py [--seeds 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import time

from bookstore.simulation import runner


def calibration() -> float:
    started, x = time.process_time(), 0
    for i in range(1_000_000):
        x += i * i % 7
    return 1 / (time.process_time() - started)


def simulated(seeds: int) -> tuple[int, int, float]:
    started, checkouts, faults = time.process_time(), 0, 0
    for seed in range(seeds):
        result = runner.run(seed)
        checkouts += result.checkouts
        faults += len(result.faults)
    return checkouts, faults, time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for n in range(args.rounds):
        loops = calibration()
        checkouts, faults, cpu = simulated(args.seeds)
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(
            f"round {n + 1}: {checkouts} checkouts, {faults} faults in {cpu:.2f} CPU-s:"
            f" {checkouts / cpu:.0f} checkouts/CPU-s; calibration {loops:.2f} M loops/CPU-s;"
            f" load average {load}",
            flush=True,
        )


if __name__ == "__main__":
    main()
