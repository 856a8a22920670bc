"""The simulated world: the scheduler, the network, and the processes on them.

A `Proc` is one service process around its pure core: it reads the time from
`now()` (the simulated clock plus its own clock jump), sends through the
network, keeps what must survive a crash on its `Disk`, and can be crashed
(losing what it did not fsync, its memory rebuilt from the disk by `recover`),
restarted, paused (messages wait, timers stop) and resumed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bookstore.settings import CHECKOUT_SERVICES
from bookstore.simulation.disk import Disk
from bookstore.simulation.network import Network
from bookstore.simulation.scheduler import Scheduler

if TYPE_CHECKING:
    from bookstore.simulation.invariants import Invariants


class Proc:
    tick_s = 0.0  # 0: no periodic tick

    def __init__(self, world: World, name: str) -> None:
        self.world = world
        self.name = name
        self.disk = Disk()
        self.up = True
        self.paused = False
        self.inbox: list[tuple[str, str, Any]] = []
        self.clock_offset = 0.0
        self.incarnation = 0
        self._send = world.net.send

    # -- what a subclass provides ------------------------------------------------

    def boot(self) -> None:
        """Start (or restart, after `recover`)."""

    def recover(self) -> None:
        """Rebuild memory from the disk after a crash."""

    def receive(self, src: str, payload: tuple[Any, ...]) -> None:
        raise NotImplementedError

    def tick(self) -> None:
        """Called every `tick_s` while up and not paused."""

    # -- what the world does to it -------------------------------------------------

    def now(self) -> float:
        return self.world.sched.now + self.clock_offset

    def send(self, dst: str, payload: tuple[Any, ...]) -> None:
        self._send(self.name, dst, payload)

    def start_ticking(self) -> None:
        if self.tick_s:
            jitter = self.tick_s * self.world.sched.rng.random()
            self.world.sched.after(jitter, self._tick, self.incarnation)

    def _tick(self, incarnation: int) -> None:
        if incarnation != self.incarnation or not self.up:
            return
        if not self.paused:
            self.tick()
        self.world.sched.after(self.tick_s, self._tick, incarnation)

    def crash(self) -> None:
        self.up = False
        self.paused = False
        self.inbox.clear()
        self.incarnation += 1
        self.world.stats["unsynced writes lost"] += self.disk.crash()

    def restart(self) -> None:
        self.up = True
        self.recover()
        self.boot()
        self.start_ticking()

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        held, self.inbox = self.inbox, []
        for src, _, payload in held:
            if self.up and not self.paused:
                self.receive(src, payload)


class World:
    def __init__(self, seed: int, mutant: str = "") -> None:
        self.sched = Scheduler(seed)
        self.rng = self.sched.rng
        self.mutant = mutant
        self.procs: dict[str, Proc] = {}
        self.stats: dict[str, int] = {"unsynced writes lost": 0}
        streams = frozenset(("orchestrator", *CHECKOUT_SERVICES))
        self.net = Network(self.sched, self._deliver, streams)
        self.inv: Invariants | None = None

    def add(self, proc: Proc) -> None:
        self.procs[proc.name] = proc

    def start(self) -> None:
        for proc in self.procs.values():
            proc.boot()
            proc.start_ticking()

    def count(self, what: str) -> None:
        self.stats[what] = self.stats.get(what, 0) + 1

    def _deliver(self, message: tuple[str, str, Any]) -> None:
        proc = self.procs[message[1]]
        if not proc.up:
            return
        if proc.paused:
            proc.inbox.append(message)
            return
        proc.receive(message[0], message[2])
