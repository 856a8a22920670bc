"""An in-memory message board running Bully nodes on fake time, with a fake queue."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from bookstore.order_executor.bully import Node, Outgoing, Timings

TIMINGS = Timings(
    heartbeat=0.5,
    leader_silence=1.5,
    failure_timeout=0.5,
    election_timeout=0.25,
    coordinator_timeout=0.6,
    queue_unreachable=1.0,
)
DT = 0.01
LATENCY = 0.005
RETRY_LEADER_ALIVE = 0.8  # the adapter asks again this long after its first refusal


@dataclass
class FakeQueue:
    """Registration and fencing as the real queue does them."""

    failure_timeout: float
    epoch: int = 0
    leader: int = 0
    active_at: float = float("-inf")
    up: bool = True
    down_since: float = 0.0
    grants: list[tuple[int, int]] = field(default_factory=list)  # (epoch, replica)

    def register(self, replica: int, now: float) -> int | None:
        if self.leader > replica and now - self.active_at < self.failure_timeout:
            return None  # LEADER_ALIVE
        self.epoch += 1
        self.leader = replica
        self.active_at = now
        self.grants.append((self.epoch, replica))
        return self.epoch


class Board:
    def __init__(self, ids: list[int], seed: int = 1, timings: Timings = TIMINGS) -> None:
        self.ids = ids
        self.timings = timings
        self.now = 0.0
        self.rng = random.Random(seed)
        self.nodes: dict[int, Node] = {}
        self.inflight: list[tuple[float, Outgoing]] = []
        self.down: set[int] = set(ids)
        self.paused: set[int] = set()
        self.cut: set[frozenset[int]] = set()  # pairs that cannot talk
        self.queue_cut: set[int] = set()  # replicas that cannot reach the queue
        self.drop: Callable[[Outgoing], bool] = lambda o: False
        self.queue = FakeQueue(timings.failure_timeout)
        self.sent = 0
        self.double_leadership = 0
        self.refused_since: dict[int, float] = {}

    # -- faults ------------------------------------------------------------------------

    def start(self, i: int) -> None:
        node = Node(i, self.ids, self.timings)
        self.nodes[i] = node
        self.down.discard(i)
        self.send(i, node.start(self.now))

    def start_all(self) -> None:
        for i in self.ids:
            self.start(i)

    def crash(self, i: int) -> None:
        """A killed process: its connections close, which its peers' adapters notice."""
        self.down.add(i)
        self.paused.discard(i)
        for j in self.ids:
            if self._alive(j) and frozenset((i, j)) not in self.cut:
                self.send(j, self.nodes[j].on_leader_lost(i, self.now))

    def lossy(self, rate: float) -> None:
        self.drop = lambda o: self.rng.random() < rate

    # -- running -------------------------------------------------------------------------

    def send(self, sender: int, out: list[Outgoing]) -> None:
        for o in out:
            self.sent += 1
            if self.drop(o) or frozenset((sender, o.to)) in self.cut:
                continue
            self.inflight.append((self.now + LATENCY, o))

    def _alive(self, i: int) -> bool:
        return i not in self.down and i not in self.paused

    def step(self) -> None:
        self.now = round(self.now + DT, 6)
        due = [(t, o) for t, o in self.inflight if t <= self.now]
        self.inflight = [(t, o) for t, o in self.inflight if t > self.now]
        keep: list[tuple[float, Outgoing]] = []
        for t, o in due:
            if o.to in self.down:
                continue  # lost
            if o.to in self.paused:
                keep.append((t, o))  # sits in the socket until it wakes
                continue
            self.send(o.to, self.nodes[o.to].on_message(o.message, self.now))
        self.inflight.extend(keep)
        for i in self.ids:
            if self._alive(i):
                self.send(i, self.nodes[i].on_tick(self.now))
                self._queue_side(i)
        current = [i for i in self.ids if self._alive(i) and self.holds_queue(i)]
        if len(current) > 1:
            self.double_leadership += 1

    def _queue_side(self, i: int) -> None:
        node, q = self.nodes[i], self.queue
        reachable = q.up and i not in self.queue_cut
        if node.abstaining and reachable:
            self.send(i, node.on_queue_reachable(self.now))
        elif node.needs_registration and reachable:
            epoch = q.register(i, self.now)
            if epoch is None:
                first = self.refused_since.setdefault(i, self.now)
                if self.now - first >= RETRY_LEADER_ALIVE:
                    del self.refused_since[i]
                    self.send(i, node.on_fenced(self.now, "LEADER_ALIVE"))
            else:
                self.refused_since.pop(i, None)
                self.send(i, node.on_registered(epoch, self.now))
        else:
            self.refused_since.pop(i, None)
        if node.is_working_leader:
            if not reachable:
                if self.now - q.down_since >= self.timings.queue_unreachable:
                    self.send(i, node.on_queue_unreachable(self.now))
            elif node.epoch != q.epoch or q.leader != i:
                self.send(i, node.on_fenced(self.now, "STALE_EPOCH"))
            else:
                q.active_at = self.now  # a dequeue with the current epoch

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds / DT)):
            self.step()

    def run_until(self, cond: Callable[[], bool], limit: float) -> float:
        """Fake seconds until `cond` holds; fails past `limit`."""
        start = self.now
        while not cond():
            assert self.now - start <= limit, f"not within {limit}s"
            self.step()
        return self.now - start

    # -- views -----------------------------------------------------------------------------

    def holds_queue(self, i: int) -> bool:
        node = self.nodes[i]
        q = self.queue
        return node.is_working_leader and node.epoch == q.epoch and q.leader == i

    def working_leader(self) -> int | None:
        leaders = [i for i in self.ids if self._alive(i) and self.nodes[i].is_working_leader]
        return leaders[0] if len(leaders) == 1 else None

    def settled_on(self, leader: int) -> bool:
        if self.working_leader() != leader or not self.holds_queue(leader):
            return False
        return all(
            self.nodes[i].leader == leader for i in self.ids if self._alive(i) and i != leader
        )
