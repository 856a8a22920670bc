"""The checkout: the three services' choreography nodes and the orchestrator's flow.

`Service` wraps `choreography.protocol.Node` (its local events take a random
time and succeed unless the order's plan says one fails); `Orchestrator` wraps
one `orchestrator.flow.Checkout` per order, plays the callers (some give up
while their checkout runs) and enqueues every approved order at the queue,
retrying until the queue acknowledges it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bookstore import vclock
from bookstore.choreography import protocol as p
from bookstore.choreography.events import EVENTS
from bookstore.orchestrator import flow
from bookstore.settings import CHECKOUT_SERVICES
from bookstore.simulation import mutants
from bookstore.simulation.workload import Plan
from bookstore.simulation.world import Proc, World

TTL_S = 1.0
TIMEOUTS = flow.Timeouts(checkout=1.0, ack=0.3)
ORCHESTRATOR = "orchestrator"
QUEUE = "queue"
ENQUEUE_RETRY_S = 0.3


@dataclass(frozen=True)
class Result:
    ok: bool
    reason: str = ""


class Service(Proc):
    tick_s = 0.5

    def __init__(self, world: World, name: str, plans: dict[str, Plan]) -> None:
        super().__init__(world, name)
        self.plans = plans
        self.node: p.Node[Result] = p.Node(name, ttl_s=TTL_S)
        self.running: set[tuple[str, str]] = set()
        self._handlers: dict[type, Callable[[Any], None]] = {
            p.Run: self._run,
            p.SendClock: self._send_clock,
            p.Report: self._report,
            p.AckCancel: self._ack_cancel,
            p.AckFinalize: self._ack_finalize,
            p.Stop: self._stop,
            p.ClockError: self._clock_error,
        }

    def receive(self, src: str, m: tuple[Any, ...]) -> None:
        kind, oid = m[0], m[1]
        now = self.now()
        if kind == "update":
            self.act(self.node.on_update(oid, m[2], m[3], now, m[4]))
        elif kind == "init":
            self.act(self.node.on_init(oid, now))
        elif kind == "cancel":
            self.act(self.node.on_cancel(oid, now))
        else:
            self.finalize(oid, m[2])

    def finalize(self, oid: str, final: vclock.Clock) -> None:
        order = self.node.orders.get(oid)
        covered = order is None or vclock.leq(order.clock, final)
        told = final
        if self.world.mutant == mutants.SKIPS_FINAL_CHECK and order is not None:
            told = vclock.merge(final, order.clock)  # as if the check were not there
        actions = self.node.on_finalize(oid, told)
        for action in actions:
            if isinstance(action, p.AckFinalize):
                assert self.world.inv is not None
                self.world.inv.final_checked(self.name, oid, covered, action.consistent)
        self.act(actions)

    def tick(self) -> None:
        self.act(self.node.on_tick(self.now()))

    def act(self, actions: list[p.Action[Result]]) -> None:
        handlers = self._handlers
        for action in actions:
            handler = handlers.get(type(action))
            if handler is not None:
                handler(action)

    def _run(self, a: p.Run) -> None:
        self.running.add((a.order_id, a.event))
        delay = 0.0005 + 0.004 * self.world.rng.random()
        self.world.sched.after(delay, self._done, (a.order_id, a.event))

    def _send_clock(self, a: p.SendClock) -> None:
        for peer in a.to:
            self.send(peer, ("update", a.order_id, a.event, a.clock, self.name))

    def _report(self, a: p.Report[Result]) -> None:
        self.send(ORCHESTRATOR, ("report", a.order_id, a.event, a.clock, a.result))

    def _ack_cancel(self, a: p.AckCancel) -> None:
        self.send(ORCHESTRATOR, ("cancel_ack", a.order_id, a.clock, self.name))

    def _ack_finalize(self, a: p.AckFinalize) -> None:
        error = None if a.consistent else a.error
        self.send(ORCHESTRATOR, ("finalize_ack", a.order_id, error, self.name))

    def _clock_error(self, a: p.ClockError) -> None:
        self.world.count("clock errors made visible")

    def _stop(self, stop: p.Stop) -> None:
        for event in stop.events:  # half the time the event stops; else it finishes
            if self.world.rng.random() < 0.5 and (stop.order_id, event) in self.running:
                self.running.discard((stop.order_id, event))
                self.act(self.node.on_stopped(stop.order_id, event))

    def _done(self, key: tuple[str, str]) -> None:
        if key not in self.running:
            return
        self.running.discard(key)
        oid, event = key
        fails = self.plans[oid].fails == event
        self.act(self.node.on_done(oid, event, Result(not fails, f"event {event} failed")))


class Orchestrator(Proc):
    tick_s = 0.1

    def __init__(self, world: World, plans: dict[str, Plan]) -> None:
        super().__init__(world, ORCHESTRATOR)
        self.plans = plans
        self.checkouts: dict[str, flow.Checkout] = {}
        self.cancelled: set[str] = set()
        self.unacked: dict[str, float] = {}  # approved order -> when enqueue was last sent
        self.kind = mutants.checkout_class(world.mutant)
        self.outcomes: dict[str, int] = {}

    def begin(self, plan: Plan) -> None:
        oid, now = plan.order_id, self.now()
        self.checkouts[oid] = self.kind(oid, CHECKOUT_SERVICES, now, TIMEOUTS)
        for service in CHECKOUT_SERVICES:
            self.send(service, ("init", oid))
        if plan.abandon_after:
            self.world.sched.after(plan.abandon_after, self._abandon, oid, f"abandon {oid}")
            if plan.abandon_twice:
                later = plan.abandon_after + 0.002
                self.world.sched.after(later, self._abandon, oid, f"abandon {oid}")

    def _abandon(self, oid: str) -> None:
        checkout = self.checkouts.get(oid)
        if checkout is not None:
            self.act(checkout, checkout.on_abandon(self.now()))

    def receive(self, src: str, m: tuple[Any, ...]) -> None:
        kind, oid = m[0], m[1]
        if kind == "enqueued":
            if self.unacked.pop(oid, None) is not None:
                assert self.world.inv is not None
                self.world.inv.acknowledged(oid)
            return
        checkout = self.checkouts.get(oid)
        if checkout is None:
            return
        now = self.now()
        if kind == "report":
            event, clock, result = m[2], m[3], m[4]
            spec = EVENTS[event]
            record = flow.EventRecord(
                event, spec.name, spec.service, clock, result.ok, result.reason, "sim", now, 0.0
            )
            self.act(checkout, checkout.on_report(record, (), now, "tok"))
        elif kind == "cancel_ack":
            self.act(checkout, checkout.on_cancel_ack(m[3], m[2], now))
        else:
            self.act(checkout, checkout.on_finalize_ack(m[3], m[2], now))

    def act(self, checkout: flow.Checkout, actions: list[flow.Action]) -> None:
        oid = checkout.order_id
        for a in actions:
            if isinstance(a, flow.Cancel):
                self.cancelled.add(oid)
                for service in sorted(a.services):
                    self.send(service, ("cancel", oid))
            elif isinstance(a, flow.Finalize):
                for service in sorted(a.services):
                    self.send(service, ("finalize", oid, a.final_clock))
            else:
                self._answered(a.outcome)
        if checkout.done:
            del self.checkouts[oid]

    def _answered(self, outcome: flow.Outcome) -> None:
        oid = outcome.order_id
        assert self.world.inv is not None
        self.world.inv.answered(outcome, oid in self.cancelled)
        label = "approved" if outcome.approved else "not approved"
        self.outcomes[label] = self.outcomes.get(label, 0) + 1
        if outcome.approved:
            self.unacked[oid] = self.now()
            self.send(QUEUE, ("enqueue", self.plans[oid]))

    def tick(self) -> None:
        now = self.now()
        for checkout in list(self.checkouts.values()):
            if checkout.deadline is not None and now >= checkout.deadline:
                self.act(checkout, checkout.on_tick(now))
        for oid, sent in list(self.unacked.items()):
            if now - sent >= ENQUEUE_RETRY_S:
                self.unacked[oid] = now
                self.send(QUEUE, ("enqueue", self.plans[oid]))

    @property
    def busy(self) -> bool:
        return bool(self.checkouts or self.unacked)
