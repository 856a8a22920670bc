"""Three choreography nodes and the orchestrator's `Checkout` in memory: no I/O, no
asyncio, no clock. One scheduler, driven by a `random.Random` (seeded, or drawn by
hypothesis), decides what happens next: which message arrives, which running event
finishes, whether a stop wins its race, whether the caller gives up.

The orchestrator's Session streams are FIFO, as gRPC streams are; clock updates
between peers arrive in any order, some twice (a peer link resends the batch whose
write failed). `violations()` checks the run against the choreography's promises.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from bookstore import vclock
from bookstore.choreography import protocol
from bookstore.choreography.events import EVENTS
from bookstore.choreography.protocol import Node
from bookstore.orchestrator.flow import (
    Answer,
    Cancel,
    Checkout,
    EventRecord,
    Finalize,
    State,
    Timeouts,
)
from bookstore.settings import CHECKOUT_SERVICES
from bookstore.vclock import Clock

ORDER = "o1"
EDGES = [(dep, spec.event) for spec in EVENTS.values() for dep in spec.deps]
TIMEOUTS = Timeouts(checkout=10.0, ack=1.0)  # no time passes: they never expire


@dataclass(frozen=True)
class Verdict:
    ok: bool


Action = protocol.Action[Verdict]
# What the orchestrator sends a service: ("init", None), ("cancel", None), ("finalize", clock).
Command = tuple[str, Clock | None]
Update = tuple[str, str, Clock, str]  # to, event, clock, sender


@dataclass
class World:
    rng: random.Random
    fails: frozenset[str] = frozenset()  # events whose check fails
    abandon: bool = False  # the caller gives up at some moment before the decision
    make_node: Callable[[str], Node[Verdict]] = lambda s: Node(s, ttl_s=60.0)
    nodes: dict[str, Node[Verdict]] = field(init=False)
    checkout: Checkout = field(init=False)
    commands: dict[str, deque[Command]] = field(init=False)
    replies: dict[str, deque[Action]] = field(init=False)
    updates: list[Update] = field(default_factory=list)
    running: list[tuple[str, str]] = field(default_factory=list)  # (service, event)
    stopping: set[tuple[str, str]] = field(default_factory=set)
    reports: list[protocol.Report[Verdict]] = field(default_factory=list)
    reporter: dict[str, str] = field(default_factory=dict)  # event -> service
    errors: list[protocol.ClockError | protocol.Expired] = field(default_factory=list)
    finalize_acks: dict[str, protocol.AckFinalize] = field(default_factory=dict)
    answers: list[Answer] = field(default_factory=list)
    resent: int = 0
    abandoned: bool = False
    lost_races: int = 0  # events that finished although asked to stop

    def __post_init__(self) -> None:
        self.nodes = {s: self.make_node(s) for s in CHECKOUT_SERVICES}
        self.checkout = Checkout(ORDER, CHECKOUT_SERVICES, 0.0, TIMEOUTS)
        self.commands = {s: deque([("init", None)]) for s in CHECKOUT_SERVICES}
        self.replies = {s: deque() for s in CHECKOUT_SERVICES}

    # ---- running ---------------------------------------------------------------------

    def run(self, limit: int = 10_000) -> World:
        """Take steps until nothing is left to happen."""
        for _ in range(limit):
            choices = self._choices()
            if not choices:
                return self
            self.rng.choice(choices)()
        raise AssertionError("the choreography did not settle")

    def _choices(self) -> list[Callable[[], None]]:
        choices: list[Callable[[], None]] = []
        for s in CHECKOUT_SERVICES:
            if self.commands[s]:
                choices.append(lambda s=s: self._command(s))
            if self.replies[s]:
                choices.append(lambda s=s: self._reply(s))
        choices += [lambda i=i: self._update(i) for i in range(len(self.updates))]
        choices += [lambda i=i: self._finish(i) for i in range(len(self.running))]
        if self.abandon and not self.abandoned and self.checkout.state is State.RUNNING:
            choices.append(self._abandon)
        return choices

    def _command(self, service: str) -> None:
        kind, clock = self.commands[service].popleft()
        node = self.nodes[service]
        if kind == "init":
            self._node_did(service, node.on_init(ORDER, 0.0))
        elif kind == "cancel":
            self._node_did(service, node.on_cancel(ORDER, 0.0))
        else:
            assert clock is not None
            self._node_did(service, node.on_finalize(ORDER, clock))

    def _update(self, i: int) -> None:
        to, event, clock, sender = self.updates[i]
        if self.resent < 3 and self.rng.random() < 0.1:
            self.resent += 1  # delivered now and again later
        else:
            del self.updates[i]
        self._node_did(to, self.nodes[to].on_update(ORDER, event, clock, 0.0, sender))

    def _finish(self, i: int) -> None:
        service, event = self.running.pop(i)
        node = self.nodes[service]
        if (service, event) in self.stopping:
            if self.rng.random() < 0.7:
                self._node_did(service, node.on_stopped(ORDER, event))
                return
            self.lost_races += 1  # the stop came too late
        self._node_did(service, node.on_done(ORDER, event, Verdict(event not in self.fails)))

    def _abandon(self) -> None:
        self.abandoned = True
        self._orchestrator_did(self.checkout.on_abandon(0.0))

    # ---- the nodes' actions ------------------------------------------------------------

    def _node_did(self, service: str, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, protocol.Run):
                self.running.append((service, action.event))
            elif isinstance(action, protocol.Stop):
                self.stopping.update((service, e) for e in action.events)
            elif isinstance(action, protocol.SendClock):
                self.updates += [(to, action.event, action.clock, service) for to in action.to]
            elif isinstance(action, protocol.Report):
                self.reports.append(action)
                self.reporter[action.event] = service
                self.replies[service].append(action)
            elif isinstance(action, protocol.AckCancel | protocol.AckFinalize):
                self.replies[service].append(action)
            elif isinstance(action, protocol.ClockError | protocol.Expired):
                self.errors.append(action)

    # ---- the orchestrator ----------------------------------------------------------------

    def _reply(self, service: str) -> None:
        action = self.replies[service].popleft()
        if isinstance(action, protocol.Report):
            spec = EVENTS[action.event]
            record = EventRecord(
                spec.event, spec.name, service, action.clock, action.result.ok, "", "", 0.0, 0.0
            )
            self._orchestrator_did(self.checkout.on_report(record, [], 0.0))
        elif isinstance(action, protocol.AckCancel):
            self._orchestrator_did(self.checkout.on_cancel_ack(service, action.clock, 0.0))
        elif isinstance(action, protocol.AckFinalize):
            self.finalize_acks[service] = action
            error = None if action.consistent else action.error
            self._orchestrator_did(self.checkout.on_finalize_ack(service, error, 0.0))

    def _orchestrator_did(self, actions: list[Cancel | Finalize | Answer]) -> None:
        for action in actions:
            if isinstance(action, Cancel):
                for s in action.services:
                    self.commands[s].append(("cancel", None))
            elif isinstance(action, Finalize):
                for s in action.services:
                    self.commands[s].append(("finalize", action.final_clock))
            else:
                self.answers.append(action)

    # ---- what must hold -------------------------------------------------------------------

    def clocks(self) -> dict[str, Clock]:
        """Every event that ran (succeeded or not) -> the clock it reported."""
        return {r.event: r.clock for r in self.reports}

    def violations(self) -> list[str]:
        """What went wrong in the run (nothing, if the choreography kept its promises)."""
        found = self._order_violations() + self._end_violations()
        events = [r.event for r in self.reports]
        found += [f"{e} ran twice" for e in sorted(set(events)) if events.count(e) > 1]
        ok = {r.event for r in self.reports if r.result.ok}
        for report in self.reports:
            missing = [d for d in EVENTS[report.event].deps if d not in ok]
            if missing:
                found.append(f"{report.event} ran without successful {missing}")
        return found

    def _order_violations(self) -> list[str]:
        clocks = self.clocks()
        return [
            f"{x} -> {y} but clocks {vclock.fmt(clocks[x])}, {vclock.fmt(clocks[y])}"
            for x, y in EDGES
            if x in clocks and y in clocks and not vclock.happened_before(clocks[x], clocks[y])
        ]

    def _end_violations(self) -> list[str]:
        found = [f"error: {e}" for e in self.errors]
        outcome = self.answers[0].outcome if len(self.answers) == 1 else None
        if outcome is None:
            return [*found, f"{len(self.answers)} answers"]
        ran = vclock.ZERO
        for report in self.reports:
            ran = vclock.tick(ran, self.reporter[report.event])
        if outcome.final_clock != ran:  # each entry counts the events its service ran
            found.append(f"final clock {outcome.final_clock} but the services ran {ran}")
        found += [f"{s} still holds the order" for s, n in self.nodes.items() if n.orders]
        found += [f"{s}: {a.error}" for s, a in self.finalize_acks.items() if not a.consistent]
        if len(self.finalize_acks) != len(CHECKOUT_SERVICES) or not self.checkout.done:
            found.append(f"finalize acks from {sorted(self.finalize_acks)} only")
        failed = self.fails & set(self.clocks())
        if outcome.approved and (failed or len(self.reports) != 6):
            found.append("approved without six successes")
        if not outcome.approved and not failed and not self.abandoned:
            found.append("rejected, yet no check failed")
        return found
