"""`bookstore simulate`: run seeds, report, replay, shrink and draw a failure."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bookstore.simulation import mutants, report, runner, shrink
from bookstore.simulation.runner import Result


def main(args: argparse.Namespace) -> int:
    if args.list_mutants:
        for name, what in mutants.MUTANTS.items():
            print(f"{name:38} {what}")
        return 0
    if args.mutant and args.mutant not in mutants.MUTANTS:
        print(f"bookstore simulate: no mutant {args.mutant!r} (see --list-mutants)")
        return 2
    seeds = [args.seed] if args.seed is not None else range(args.seeds)
    started = time.process_time()
    checkouts = faults = 0
    for seed in seeds:
        result = runner.run(seed, args.checkouts, args.mutant)
        checkouts += result.checkouts
        faults += len(result.faults)
        if args.seed is not None:
            _print_one(result)
        if not result.ok:
            _print_totals(checkouts, faults, time.process_time() - started)
            return _failed(result, args)
    _print_totals(checkouts, faults, time.process_time() - started)
    print(f"all {len(seeds)} seeds passed" + (f" (mutant {args.mutant})" if args.mutant else ""))
    return 0


def _print_one(result: Result) -> None:
    print(f"seed {result.seed}: {result.checkouts} checkouts, {len(result.faults)} faults")
    for fault in result.faults:
        print(f"  {fault}")
    print(
        f"  {result.steps} events, {result.sim_time:.3f}s simulated,"
        f" trace hash {result.trace_hash}: {'ok' if result.ok else 'FAILED'}"
    )


def _print_totals(checkouts: int, faults: int, cpu_s: float) -> None:
    rate = checkouts / cpu_s if cpu_s else 0.0
    print(
        f"simulated {checkouts} checkouts and {faults} faults in {cpu_s:.2f} CPU-seconds:"
        f" {rate:.0f} checkouts per CPU-second"
    )


def _failed(result: Result, args: argparse.Namespace) -> int:
    print(f"FAILED: seed {result.seed} (trace hash {result.trace_hash}): {result.violation}")
    print(f"replay: bookstore simulate --seed {result.seed}" + _flags(args))
    shrunk = shrink.shrink(result, args.mutant)
    text = shrink.describe(shrunk, result)
    print(text)
    if args.html:
        Path(args.html).write_text(report.page(shrunk, text), encoding="utf-8")
        print(f"drawn in {args.html}")
    return 1


def _flags(args: argparse.Namespace) -> str:
    flags = f" --mutant {args.mutant}" if args.mutant else ""
    if args.checkouts != runner.CHECKOUTS:
        flags += f" --checkouts {args.checkouts}"
    return flags
