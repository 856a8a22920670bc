"""The order queue: `order_queue.state.QueueState` over a simulated disk, with the
coordinator decision log (the rules of `order_queue.decisions`).

As the real store does, it asks the state first, makes the change durable (one
fsync), then reports it to the state and answers: memory never runs ahead of
the disk. After a crash the state is rebuilt from the disk (`restore`).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from bookstore.order_queue import state as qs
from bookstore.simulation import mutants
from bookstore.simulation.workload import Plan
from bookstore.simulation.world import Proc, World

EXECUTORS = (1, 2, 3, 4)
LEASE_S = 2.0
FAILURE_TIMEOUT_S = 0.5


class Queue(Proc):
    def __init__(self, world: World) -> None:
        super().__init__(world, "queue")
        self._lease_ids = itertools.count(1)
        self.state = self._new_state()

    def _new_state(self) -> qs.QueueState:
        state = qs.QueueState(
            lease_s=LEASE_S,
            failure_timeout_s=FAILURE_TIMEOUT_S,
            replica_ids=EXECUTORS,
            lease_ids=lambda: f"L{next(self._lease_ids)}",
        )
        if self.world.mutant == mutants.QUEUE_IGNORES_FENCING:

            def no_fence(replica_id: int, epoch: int, now: float, *, alive: bool = True) -> None:
                state.check_replica(replica_id)

            state._fence = no_fence  # type: ignore[method-assign]
        return state

    def recover(self) -> None:
        self.state = self._new_state()
        d = self.disk.durable
        # deliveries are not on disk: after a restart every order is a first delivery
        queued = [
            dataclasses.replace(v, deliveries=0)
            for k, v in d.items()
            if k.startswith("o:") and v is not None
        ]
        self.state.restore(d.get("epoch", 0), d.get("leader", 0), d.get("executed", 0), queued)

    @property
    def inv(self) -> Any:
        return self.world.inv

    def receive(self, src: str, m: tuple[Any, ...]) -> None:
        kind = m[0]
        try:
            if kind == "enqueue":
                self._enqueue(src, m[1])
            elif kind == "take":
                self._take(src, m[1], m[2], m[3])
            elif kind == "complete":
                self._complete(src, *m[1:])
            elif kind == "log_decision":
                self._log_decision(src, *m[1:])
            elif kind == "read_decision":
                d = self.disk.get(f"d:{m[3]}")
                self.send(src, ("decision", m[3], m[2], d))
            elif kind == "list_decisions":
                self._list_decisions(src, m[1])
            elif kind == "register":
                self._register(src, m[1])
            else:
                self.send(src, ("probe_ok",))
        except qs.QueueError as refused:
            self.send(src, ("refused", kind, refused.code, m[3] if len(m) > 3 else "", m))

    def _enqueue(self, src: str, plan: Plan) -> None:
        oid = plan.order_id
        if self.disk.get(f"o:{oid}") is None and self.disk.get(f"x:{oid}") is None:
            items = [qs.Item(b, b, q) for b, q in plan.items]
            order = self.state.new_order(oid, items, "sim", plan.token, plan.amount_cents)
            sequence = self.disk.get("seq", 0) + 1
            self.disk.put("seq", sequence)
            order.sequence = sequence
            self.disk.put(f"o:{oid}", order)
            if self.world.mutant == mutants.ACKS_BEFORE_FSYNC:
                self.world.sched.after(0.02, self._late_fsync, self.incarnation)
            else:
                self.disk.fsync()
            self.state.on_enqueued(order, sequence)
        durable = self.disk.durable
        self.inv.enqueue_acked(oid, durable.get(f"o:{oid}") or durable.get(f"x:{oid}"))
        self.send(src, ("enqueued", oid))

    def _late_fsync(self, incarnation: int) -> None:
        if incarnation == self.incarnation and self.up:
            self.disk.fsync()

    def _register(self, src: str, replica_id: int) -> None:
        now = self.now()
        self.state.check_register(replica_id, now)
        epoch = self.state.epoch + 1
        self.disk.put("epoch", epoch)
        self.disk.put("leader", replica_id)
        self.disk.fsync()
        self.state.on_registered(replica_id, epoch, now)
        self.inv.granted(epoch, replica_id)
        self.send(src, ("registered", epoch))

    def _take(self, src: str, replica_id: int, epoch: int, most: int) -> None:
        """One Dequeue: up to `most` orders (store.dequeue_many)."""
        now = self.now()
        taken = self.state.take(replica_id, epoch, now)
        self.inv.acted("take", replica_id, epoch, self.state.epoch)
        if taken is None:
            self.send(src, ("empty", epoch))
            return
        leased = [taken]
        while len(leased) < most:
            more = self.state.take(replica_id, epoch, now, again=True)
            if more is None:
                break
            leased.append(more)
        batch = tuple((o.order_id, lease.lease_id, o) for o, lease in leased)
        self.send(src, ("leased", epoch, batch))

    def _complete(
        self, src: str, replica_id: int, epoch: int, oid: str, lease: str, outcome: str, why: str
    ) -> None:
        """An order without a decision is executed here; one with a decision was
        executed with it, and completing it finishes the decision (db.complete)."""
        self.state.check_complete(replica_id, epoch, oid, lease, outcome, why, self.now())
        created = self.disk.get(f"x:{oid}") is None
        if created:
            if oid not in self.state.orders:
                raise qs.UnknownOrder(f"no order {oid}")
            self.inv.acted("complete", replica_id, epoch, self.state.epoch)
            self._execute(oid, outcome)
        finished = self.disk.get(f"d:{oid}") is not None and not self.disk.get(f"f:{oid}")
        if finished:
            self.inv.acted("finish", replica_id, epoch, self.state.epoch)
            self.disk.put(f"f:{oid}", True)
        if self.disk.dirty:
            self.disk.fsync()
        if created:
            self.inv.completed_order(oid, outcome)
            self.state.on_completed(oid, False)
        self.send(src, ("completed", oid, epoch))

    def _execute(self, oid: str, outcome: str) -> None:
        """The order's execution (written, not yet fsynced): it leaves the queue."""
        self.disk.put(f"x:{oid}", outcome)
        self.disk.put(f"o:{oid}", None)
        self.disk.put("executed", self.disk.get("executed", 0) + 1)

    def _log_decision(
        self, src: str, replica_id: int, epoch: int, oid: str, decision: str, reason: str
    ) -> None:
        """The first decision is the order's commit point (decisions.log): its
        execution is recorded in the same fsync, and the order leaves the queue."""
        self.state.check_decision(epoch)
        if epoch < self.disk.get("epoch", 0):
            raise qs.StaleEpoch(f"current epoch is {self.disk.get('epoch', 0)}")
        if epoch > self.disk.get("epoch", 0):
            raise qs.BadRequest(f"epoch {epoch} was never granted")
        logged = self.disk.get(f"d:{oid}")
        executed = ""
        if logged is None:
            if self.disk.get(f"o:{oid}") is None and self.disk.get(f"x:{oid}") is None:
                raise qs.UnknownOrder(f"no order {oid}")
            self.inv.acted("decide", replica_id, epoch, self.state.epoch)
            logged = (decision, reason)
            self.disk.put(f"d:{oid}", logged)
            if self.disk.get(f"x:{oid}") is None:
                executed = "executed" if decision == "commit" else "rejected"
                self._execute(oid, executed)
            self.disk.fsync()
        if executed:
            self.inv.completed_order(oid, executed)
            self.state.on_completed(oid, False)
        self.send(src, ("logged", oid, epoch, logged))

    def _list_decisions(self, src: str, epoch: int) -> None:
        """The decisions not yet finished (decisions.pending), oldest first."""
        pending = [
            k[2:]
            for k, v in self.disk.durable.items()
            if k.startswith("d:") and v is not None and not self.disk.durable.get(f"f:{k[2:]}")
        ]
        self.send(src, ("decisions", epoch, tuple(pending)))

    def unfinished(self) -> int:
        """How many logged decisions are not finished (for the end state)."""
        d = self.disk.durable
        return sum(1 for k in d if k.startswith("d:") and not d.get(f"f:{k[2:]}"))
