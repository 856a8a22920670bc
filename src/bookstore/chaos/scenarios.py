"""Named fault scenarios, played under load, each ending with the load's audit.

    kill-leader       SIGKILL the leading executor while orders flow
    pause-leader      SIGSTOP the leader for 3 s (past its failure timeout), then SIGCONT
    split-executors   a 2|2 partition of the executors for 3 s, then heal
    kill-db-primary   SIGKILL the books database's primary while orders commit

A scenario is a list of steps run by `Chaos` in the orchestrator; the same
runner serves `bookstore chaos SCENARIO` and the fault panel.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bookstore.chaos import control
from bookstore.chaos.load import MAX_DURATION_S, MAX_RATE, LoadRun, StatusOf

log = logging.getLogger(__name__)

SCENARIO_RATE = 20.0
SCENARIO_DURATION_S = 8.0
FAULT_AFTER_S = 2.0
FAULT_LASTS_S = 3.0


@dataclass
class ScenarioRun:
    name: str
    steps: list[str] = field(default_factory=list)
    load: LoadRun | None = None
    done: bool = False
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "steps": self.steps,
            "done": self.done,
            "error": self.error,
            "load": self.load.as_json() if self.load else None,
        }


class Busy(RuntimeError):
    """A load or scenario is already running."""


@dataclass(eq=False)
class Chaos:
    """The orchestrator's side of chaos: the load generator, the scenarios, and
    the relay of faults to the launcher's control socket."""

    data_dir: Path
    address: str
    status_of: StatusOf
    executions_of: Callable[[str], int]
    leader: Callable[[], Awaitable[int | None]]
    db_primary: Callable[[], Awaitable[int | None]] | None = None

    def __post_init__(self) -> None:
        self.load: LoadRun | None = None
        self.scenario: ScenarioRun | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.scenarios: dict[str, tuple[str, Callable[[ScenarioRun], Awaitable[None]]]] = {
            "kill-leader": ("kill the leader under load", self._kill_leader),
            "pause-leader": ("pause the leader past its timeout", self._pause_leader),
            "split-executors": ("a 2|2 split of the executors", self._split_executors),
            "kill-db-primary": (
                "kill the books database's primary during commits",
                self._kill_db_primary,
            ),
        }

    async def fault(self, body: dict[str, Any]) -> dict[str, Any]:
        return await control.request(self.data_dir, body)

    def busy(self) -> bool:
        return (self.load is not None and not self.load.done) or (
            self.scenario is not None and not self.scenario.done
        )

    def start_load(self, rate: float, duration_s: float) -> LoadRun:
        if self.busy():
            raise Busy("a load or scenario is running")
        if not (0 < rate <= MAX_RATE and 0 < duration_s <= MAX_DURATION_S):
            raise ValueError(
                f"rate in (0, {MAX_RATE}] per second, duration in (0, {MAX_DURATION_S:.0f}] s"
            )
        self.load = LoadRun(rate, duration_s, self.address, self.status_of, self.executions_of)
        self._spawn(self.load.run())
        return self.load

    def start_scenario(self, name: str) -> ScenarioRun:
        if name not in self.scenarios:
            raise KeyError(name)
        if self.busy():
            raise Busy("a load or scenario is running")
        run = self.scenario = ScenarioRun(name)
        self._spawn(self._play(run))
        return run

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self) -> None:
        """Nothing runs until a load or scenario is asked for."""

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _play(self, run: ScenarioRun) -> None:
        what, steps = self.scenarios[run.name]
        run.steps.append(f"{run.name}: {what}")
        run.load = LoadRun(
            SCENARIO_RATE, SCENARIO_DURATION_S, self.address, self.status_of, self.executions_of
        )
        load = asyncio.ensure_future(run.load.run())
        try:
            await asyncio.sleep(FAULT_AFTER_S)
            await steps(run)
            await load
        except Exception as exc:
            run.error = str(exc)
            log.warning("chaos scenario %s failed: %s", run.name, exc)
            load.cancel()
        finally:
            await self._heal(run)
            run.done = True
            if run.load.audit is not None:
                log.warning("chaos scenario %s audit: %s", run.name, run.load.audit.as_json())

    async def _heal(self, run: ScenarioRun) -> None:
        try:
            await self.fault({"op": "heal_all"})
            run.steps.append("heal all")
        except control.ControlError as exc:
            run.steps.append(f"heal all failed: {exc}")

    async def _leader_name(self, run: ScenarioRun) -> str:
        leader = await self.leader()
        if leader is None:
            raise RuntimeError("no leader to break")
        run.steps.append(f"the leader is order-executor-{leader}")
        return f"order-executor-{leader}"

    async def _kill_leader(self, run: ScenarioRun) -> None:
        name = await self._leader_name(run)
        await self.fault({"op": "kill", "name": name})
        run.steps.append(f"killed {name}")

    async def _pause_leader(self, run: ScenarioRun) -> None:
        name = await self._leader_name(run)
        await self.fault({"op": "pause", "name": name, "seconds": FAULT_LASTS_S})
        run.steps.append(f"paused {name} for {FAULT_LASTS_S:g} s")

    async def _split_executors(self, run: ScenarioRun) -> None:
        sides = [["order-executor-1", "order-executor-2"], ["order-executor-3", "order-executor-4"]]
        await self.fault({"op": "partition", "sides": sides})
        run.steps.append("partition 1 2 | 3 4")
        await asyncio.sleep(FAULT_LASTS_S)
        await self.fault({"op": "heal_all"})
        run.steps.append("healed the partition")

    async def _kill_db_primary(self, run: ScenarioRun) -> None:
        primary = await self.db_primary() if self.db_primary is not None else None
        if primary is None:
            raise RuntimeError("no books-database primary to break")
        name = f"books-database-{primary}"
        run.steps.append(f"the books database's primary is {name}")
        await self.fault({"op": "kill", "name": name})
        run.steps.append(f"killed {name}")
