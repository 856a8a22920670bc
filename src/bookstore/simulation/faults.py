"""The faults a seed injects, drawn from the seed: at least three per run, each
at a random time and each healing (a crashed process restarts, a paused one
resumes, a partition heals, message faults stop; a clock jump stays)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from bookstore.simulation.network import MessageFault, Network
from bookstore.simulation.world import Proc, World

KINDS = ("crash", "pause", "partition", "messages", "clock-jump", "slow-link")
WEIGHTS = (30, 20, 20, 15, 10, 5)
TARGETS = {
    "crash": ("leader", "leader", "primary", "primary", "queue", "payment", "executor", "replica"),
    "pause": ("leader", "leader", "primary", "queue", "payment", "executor"),
    "partition": ("leader", "primary", "queue", "payment", "replica", "executor"),
    "messages": ("backend",),
    "clock-jump": ("leader", "primary", "queue", "executor", "replica"),
    "slow-link": ("transaction-verification", "fraud-detection", "suggestions"),
}


@dataclass(frozen=True)
class Fault:
    kind: str
    at: float
    duration: float
    target: str
    size: float = 0.0  # clock jump or extra delay (s); message-fault strength

    def __str__(self) -> str:
        size = f" size {self.size:.3f}" if self.size else ""
        return f"{self.kind} {self.target} at {self.at:.3f}s for {self.duration:.3f}s{size}"


def schedule(rng: random.Random, start: float, end: float, least: int = 3) -> list[Fault]:
    faults = []
    for _ in range(least + rng.randint(0, 2)):
        kind = rng.choices(KINDS, WEIGHTS)[0]
        target = rng.choice(TARGETS[kind])
        at = rng.uniform(start, end)
        duration = {"pause": rng.uniform(0.6, 2.5), "clock-jump": 0.0}.get(
            kind, rng.uniform(0.1, 1.5)
        )
        size = {"clock-jump": rng.uniform(0.3, 2.0), "slow-link": rng.uniform(0.2, 0.6)}.get(
            kind, rng.uniform(0.05, 0.3)
        )
        faults.append(Fault(kind, at, duration, target, size))
    return sorted(faults, key=lambda f: f.at)


def arm(world: World, faults: list[Fault]) -> None:
    for fault in faults:
        world.sched.at(fault.at, lambda f: _fire(world, f), fault, f"fault {fault}")


def _resolve(world: World, target: str) -> Proc:
    procs = world.procs
    if target == "leader":
        leaders = [p for p in procs.values() if getattr(p, "leading", False)]
        target = leaders[0].name if leaders else f"x{world.rng.randint(1, 4)}"
    elif target == "primary":
        primaries = [p for p in procs.values() if getattr(p, "primary_now", False)]
        target = primaries[0].name if primaries else f"db{world.rng.randint(1, 3)}"
    elif target == "executor":
        target = f"x{world.rng.randint(1, 4)}"
    elif target == "replica":
        target = f"db{world.rng.randint(1, 3)}"
    return procs[target]


def _fire(world: World, fault: Fault) -> None:
    world.count(f"fault {fault.kind}")
    sched, net = world.sched, world.net
    if fault.kind == "messages":
        net.fault = MessageFault(drop=fault.size, duplicate=fault.size / 2, reorder=0.02)
        sched.after(fault.duration, lambda _: setattr(net, "fault", None), None, "heal messages")
        return
    if fault.kind == "slow-link":
        net.slow[fault.target] = fault.size
        sched.after(fault.duration, lambda _: _heal_slow(net, fault.target), None, "heal slow")
        return
    proc = _resolve(world, fault.target)
    if not proc.up:
        return
    if fault.kind == "crash":
        proc.crash()
        sched.after(fault.duration, lambda p: p.restart(), proc, f"restart {proc.name}")
    elif fault.kind == "pause":
        proc.pause()
        sched.after(fault.duration, lambda p: p.resume(), proc, f"resume {proc.name}")
    elif fault.kind == "partition":
        net.isolated.add(proc.name)
        sched.after(fault.duration, net.isolated.discard, proc.name, f"heal {proc.name}")
    else:
        proc.clock_offset += fault.size


def _heal_slow(net: Network, target: str) -> None:
    net.slow.pop(target, None)
