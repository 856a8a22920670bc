"""One seed's run: build the world, play the checkouts and the faults, check."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from bookstore.settings import CHECKOUT_SERVICES
from bookstore.simulation import endstate, faults, workload
from bookstore.simulation.books import REPLICAS, BooksReplica
from bookstore.simulation.checkout import Orchestrator, Service
from bookstore.simulation.executor import Executor
from bookstore.simulation.faults import Fault
from bookstore.simulation.invariants import Invariants, Violation
from bookstore.simulation.payment import Payment
from bookstore.simulation.queue import EXECUTORS, Queue
from bookstore.simulation.scheduler import trace_hash
from bookstore.simulation.world import World

CHECKOUTS = 50
START_S = 0.3
GAP_S = 0.02  # between checkouts, on average
QUIET_S = 0.2  # after the last fault heals, before the end may be judged
GIVE_UP_S = 10.0  # after that: the work never drained, a liveness failure
CHECK_EVERY_S = 0.1


@dataclass
class Result:
    seed: int
    checkouts: int
    faults: list[Fault]
    violation: str = ""
    steps: int = 0
    sim_time: float = 0.0
    trace_hash: str = ""
    trace: list[str] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)
    cpu_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.violation


def build(seed: int, checkouts: int, mutant: str) -> tuple[World, list[workload.Plan], list[Fault]]:
    world = World(seed, mutant)
    plans = workload.plans(world.rng, checkouts)
    load_end = START_S + GAP_S * checkouts
    schedule = faults.schedule(world.rng, START_S, load_end + 0.5)
    by_id = {p.order_id: p for p in plans}
    world.inv = Invariants(world)
    world.add(Orchestrator(world, by_id))
    for name in CHECKOUT_SERVICES:
        world.add(Service(world, name, by_id))
    world.add(Queue(world))
    world.add(Payment(world))
    for i in REPLICAS:
        world.add(BooksReplica(world, i))
    for i in EXECUTORS:
        world.add(Executor(world, i))
    return world, plans, schedule


def run(
    seed: int, checkouts: int = CHECKOUTS, mutant: str = "", only: list[Fault] | None = None
) -> Result:
    """Run one seed; `only`: these faults instead of the seed's (shrinking)."""
    started = time.process_time()
    logging.disable(logging.WARNING)  # the cores' warnings, by the thousand
    try:
        return _run(seed, checkouts, mutant, only, started)
    finally:
        logging.disable(logging.NOTSET)


def _run(
    seed: int, checkouts: int, mutant: str, only: list[Fault] | None, started: float
) -> Result:
    world, plans, schedule = build(seed, checkouts, mutant)
    chosen = schedule if only is None else only
    result = Result(seed, checkouts, chosen)
    orchestrator = world.procs["orchestrator"]
    assert isinstance(orchestrator, Orchestrator) and world.inv is not None
    at = START_S
    for plan in plans:
        world.sched.at(at, orchestrator.begin, plan, f"checkout {plan.order_id} {plan.kind}")
        at += GAP_S * 2 * world.rng.random()
    faults.arm(world, chosen)
    world.start()
    healed = max([at, *(f.at + f.duration for f in chosen)]) + QUIET_S
    try:
        _loop(world, world.inv, healed)
    except Violation as broken:
        result.violation = str(broken)
    result.steps, result.sim_time = world.sched.steps, world.sched.now
    result.trace = world.sched.trace
    result.trace_hash = trace_hash(result.trace)
    result.stats = {
        **world.stats,
        "approved": world.inv.approved,
        "executed": len(world.inv.completed),
    }
    result.cpu_s = time.process_time() - started
    return result


def _loop(world: World, inv: Invariants, healed: float) -> None:
    sched = world.sched
    check_at = healed
    while sched.step():
        if sched.now < check_at:
            continue
        waiting = endstate.waiting_for(world, inv)
        if not waiting:
            endstate.check(world, inv)
            return
        if sched.now > healed + GIVE_UP_S:
            inv.fail(f"{GIVE_UP_S:.0f}s after the faults healed, still {waiting}")
        check_at = sched.now + CHECK_EVERY_S
    inv.fail("the simulation ran out of events")
