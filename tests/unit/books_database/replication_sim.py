"""A simulated cluster of replicas: fake time, a network that drops, delays
(and so reorders) and partitions messages, disks that take a while to write
(a replica takes no input meanwhile, as the driver's turns; its eager messages
and answers leave at once, the rest once written), crashes that keep only what
was written, and clients whose history (invoke / ok / fail / info) is recorded
for the linearizability checker. Invariants are checked as it runs. The log is
compacted often (a few entries), so snapshots are installed in most runs.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bookstore.books_database.linearizability import INFO, BookState, Operation
from bookstore.books_database.messages import (
    Answer,
    Compaction,
    Entry,
    Message,
    Outgoing,
    Output,
    Timings,
)
from bookstore.books_database.replication import NOT_PRIMARY, PRIMARY, Replica
from bookstore.books_database.stock import BookRow, Op, Result, StockMachine, Txn
from bookstore.books_database.trail import Trail

TIMINGS = Timings(heartbeat=0.05, election_min=0.3, election_max=0.6)
TICK = 0.01
COMPACTION = Compaction(keep=2, every=3)
DISK_S = (0.001, 0.015)  # how long one write takes


@dataclass
class Disk:
    """What a replica persisted: all that survives its crash."""

    books: dict[str, tuple[int, int]]
    view: int = 0
    voted_for: int = 0
    log: list[Entry] = field(default_factory=list)  # after the snapshot
    snap_index: int = 0
    snap_view: int = 0
    txns: dict[str, Txn] = field(default_factory=dict)
    answers: dict[str, Result] = field(default_factory=dict)
    max_epoch: int = 0
    applied: int = 0

    def capture(self, out: Output, machine: StockMachine) -> Callable[[], None]:
        """The write of `out`, with the rows as they are now; done when called."""
        changed = machine.books if out.installed else out.changes.books
        books = {b: (machine.books[b].stock, machine.books[b].reserved) for b in changed}
        txns = (
            dict(machine.txns) if out.installed else {t: machine.txns[t] for t in out.changes.txns}
        )
        answers = dict(machine.answers) if out.installed else dict(out.changes.answers)
        max_epoch = machine.max_epoch

        def write() -> None:
            if out.hard_state is not None:
                self.view, self.voted_for = out.hard_state
            if out.installed:
                assert out.compacted is not None
                self.log, self.books, self.txns, self.answers = [], {}, {}, {}
                self.snap_index, self.snap_view = out.compacted
            for w in out.log_writes:
                del self.log[w.start - self.snap_index - 1 :]
                self.log.extend(w.entries)
            if out.compacted is not None and not out.installed:
                del self.log[: out.compacted[0] - self.snap_index]
                self.snap_index, self.snap_view = out.compacted
            self.books.update(books)
            self.txns.update(txns)
            self.answers.update(answers)
            self.max_epoch = max_epoch
            self.applied = out.applied

        return write

    def boot(self, my_id: int, ids: list[int], rng: random.Random, trail: Trail) -> Replica:
        rows = {b: BookRow(b, s, r) for b, (s, r) in self.books.items()}
        machine = StockMachine(
            rows, dict(self.txns), dict(self.answers), self.max_epoch, self.applied
        )
        return Replica(
            my_id,
            ids,
            machine,
            view=self.view,
            voted_for=self.voted_for,
            log=list(self.log),
            snapshot=(self.snap_index, self.snap_view),
            timings=TIMINGS,
            compaction=COMPACTION,
            rng=rng,
            observer=trail,
        )


@dataclass
class Pending:
    client: int
    book: str
    call: int
    input: tuple[Any, ...]


class Cluster:
    def __init__(self, seed: int, stock: dict[str, int], size: int = 3, drop: float = 0.0):
        self.rng = random.Random(seed)
        self.ids = list(range(1, size + 1))
        self.initial = dict(stock)
        self.disks = {i: Disk({b: (s, 0) for b, s in stock.items()}) for i in self.ids}
        # each replica's trail (the cluster view's record), lost with its memory in a crash
        self.trails = {i: Trail(i) for i in self.ids}
        self.nodes: dict[int, Replica | None] = {
            i: self.disks[i].boot(i, self.ids, random.Random(self.rng.random()), self.trails[i])
            for i in self.ids
        }
        self.drop = drop
        self.now = 0.0
        self.cut: set[frozenset[int]] = set()
        self.paused: set[int] = set()  # SIGSTOPped: no ticks, messages wait for them
        self._held: dict[int, list[Callable[[Replica], Output]]] = {i: [] for i in self.ids}
        # writes that reach a replica in the same step arrive as one batch (submit_many)
        self._held_writes: dict[int, list[tuple[int, Op]]] = {i: [] for i in self.ids}
        self._wire: list[tuple[float, int, int, Message]] = []
        # each replica's writes on their way to disk: (done at, the write, messages after it)
        self._writes: dict[int, list[tuple[float, Callable[[], None], list[Outgoing]]]] = {
            i: [] for i in self.ids
        }
        self.digests: dict[int, str] = {}  # applied index -> the digest there
        self._seq = itertools.count()
        self._clock = itertools.count(1)  # logical time of invocations and returns
        self._tickets = itertools.count(1)
        self.pending: dict[tuple[int, int], tuple[int, Pending]] = {}  # (node, ticket) -> op
        self.busy: set[int] = set()  # clients with an op outstanding
        self.history: dict[str, list[Operation]] = {b: [] for b in stock}
        self.primaries: dict[int, set[int]] = {}  # view -> replicas that were its primary
        self.committed: dict[int, Entry] = {}
        self.leader_hint = 0
        self.acknowledged_writes = 0
        self.answers_seen: list[tuple[int, Answer]] = []

    # -- faults ---------------------------------------------------------------

    def crash(self, node_id: int) -> None:
        if self.nodes[node_id] is None:
            return
        self.nodes[node_id] = None
        self._writes[node_id].clear()  # never written
        self._held[node_id].clear()
        self._held_writes[node_id].clear()
        for key in [k for k in self.pending if k[0] == node_id]:
            self._finish(key, None)

    def restart(self, node_id: int) -> None:
        if self.nodes[node_id] is None:
            rng = random.Random(self.rng.random())
            self.trails[node_id] = Trail(node_id)
            self.nodes[node_id] = self.disks[node_id].boot(
                node_id, self.ids, rng, self.trails[node_id]
            )

    def pause(self, node_id: int) -> None:
        self.paused.add(node_id)

    def resume(self, node_id: int) -> None:
        self.paused.discard(node_id)

    def isolate(self, node_id: int) -> None:
        self.cut = {frozenset((node_id, p)) for p in self.ids if p != node_id}

    def heal(self) -> None:
        self.cut = set()

    def _connected(self, a: int, b: int) -> bool:
        return frozenset((a, b)) not in self.cut

    # -- the run --------------------------------------------------------------

    def _busy(self, node_id: int) -> bool:
        return node_id in self.paused or bool(self._writes[node_id])

    def _complete_writes(self) -> None:
        for i, node in self.nodes.items():
            writes = self._writes[i]
            if node is None or i in self.paused or not writes:
                continue
            while writes and writes[0][0] <= self.now:
                _, write, late = writes.pop(0)
                write()
                self._send(i, late)
            if not writes:
                self._handle(i, node.on_persisted(self.now))

    def run(self, seconds: float, clients: int = 0) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now = round(self.now + TICK, 6)
            self._complete_writes()
            for i, node in self.nodes.items():  # client requests first: a woken replica
                if node is not None and not self._busy(i):  # may see them before news
                    for request in self._held[i]:
                        self._handle(i, request(node))
                    self._held[i].clear()
                    if self._held_writes[i]:
                        self._handle(i, node.submit_many(self._held_writes[i], self.now))
                    self._held_writes[i] = []
            self._deliver()
            for i, node in self.nodes.items():
                if node is not None and not self._busy(i):
                    self._handle(i, node.on_tick(self.now))
            for client in range(clients):
                if client not in self.busy and self.rng.random() < 0.3:
                    self._invoke(client)

    def _deliver(self) -> None:
        waiting = []
        while self._wire and self._wire[0][0] <= self.now:
            item = heapq.heappop(self._wire)
            _, _, to, msg = item
            node = self.nodes[to]
            if self._busy(to):
                waiting.append(item)
            elif node is not None and self._connected(msg.sender, to):
                self._handle(to, node.on_message(msg, self.now))
        for item in waiting:
            heapq.heappush(self._wire, item)

    def _handle(self, node_id: int, out: Output) -> None:
        """Eager messages and answers now; the write, then the other messages, later."""
        node = self.nodes[node_id]
        assert node is not None
        self._send(node_id, out.early())
        for answer in out.answers:
            self.answers_seen.append((node_id, answer))
            self._answered(node_id, answer)
        writes = self._writes[node_id]
        if out.durable_work or writes:
            start = max(self.now, writes[-1][0] if writes else 0.0)
            done = start + self.rng.uniform(*DISK_S)
            writes.append((done, self.disks[node_id].capture(out, node.machine), out.late()))
        else:
            self._send(node_id, out.late())
        self._check(node_id, node)

    def _send(self, node_id: int, messages: list[Outgoing]) -> None:
        for o in messages:
            if self._connected(node_id, o.to) and self.rng.random() >= self.drop:
                delay = self.rng.uniform(0.001, 0.03)
                heapq.heappush(self._wire, (self.now + delay, next(self._seq), o.to, o.message))

    # -- invariants -----------------------------------------------------------

    def _check(self, node_id: int, node: Replica) -> None:
        if node.role == PRIMARY:
            self.primaries.setdefault(node.view, set()).add(node_id)
            assert len(self.primaries[node.view]) == 1, f"two primaries in view {node.view}"
            self.leader_hint = node_id
        for index in range(node.log.snap_index + 1, node.commit + 1):
            entry = node.log[index]
            assert self.committed.setdefault(index, entry) == entry, f"committed {index} lost"
        digest = node.machine.digest()
        applied = node.machine.applied
        assert self.digests.setdefault(applied, digest) == digest, f"two states at {applied}"
        for row in node.machine.books.values():
            assert row.stock >= 0 and row.reserved >= 0 and row.available >= 0

    def live(self) -> list[Replica]:
        return [n for i, n in self.nodes.items() if n is not None and i not in self.paused]

    def converged(self) -> bool:
        live = self.live()
        return len({(n.machine.applied, n.machine.digest()) for n in live}) == 1

    # -- clients --------------------------------------------------------------

    def _invoke(self, client: int) -> None:
        book = self.rng.choice(sorted(self.initial))
        kind = self.rng.choice(["read", "read", "reserve", "reserve", "set", "finish"])
        txn = f"c{client}-{next(self._tickets)}"
        if kind == "read":
            args: tuple[Any, ...] = ("read",)
        elif kind == "set":
            args = ("set", self.rng.randint(0, 6))
        elif kind == "reserve":
            args = ("reserve", txn, self.rng.randint(1, 3))
        else:
            held = self._reserved_txns(book)
            if not held:
                return
            args = (self.rng.choice(["commit", "release"]), self.rng.choice(held))
        # mostly the believed primary; sometimes any replica (a deposed primary may answer)
        hinted = self.leader_hint and self.rng.random() < 0.7
        target = self.leader_hint if hinted else self.rng.choice(self.ids)
        node = self.nodes[target]
        ticket = next(self._tickets)
        pending = Pending(client, book, next(self._clock), args)
        if node is None:  # connection refused: definitely not done
            self.leader_hint = 0
            return
        self.busy.add(client)
        self.pending[(target, ticket)] = (ticket, pending)
        if kind == "read":
            self._held[target].append(lambda n: n.read(ticket, (book,), self.now))
        else:
            self._held_writes[target].append((ticket, _op(book, args, ticket)))

    def _reserved_txns(self, book: str) -> list[str]:
        done = {o.input[1] for o in self.history[book] if o.input[0] in ("commit", "release")}
        return [
            o.input[1]
            for o in self.history[book]
            if o.input[0] == "reserve" and o.output == "OK" and o.input[1] not in done
        ]

    def _answered(self, node_id: int, answer: Answer) -> None:
        key = (node_id, answer.ticket)
        if key not in self.pending:
            return
        result = answer.result
        if result.code == NOT_PRIMARY:
            hint = int(result.message.rsplit(" ", 1)[-1])
            self.leader_hint = hint
            self._finish(key, "FAIL")
        elif result.code == "UNKNOWN":
            self._finish(key, None)
        elif answer.stock:
            _, stock, available = answer.stock[0]
            self._finish(key, (stock, available))
        else:
            self._finish(key, result.code)

    def _finish(self, key: tuple[int, int], output: Any) -> None:
        _, p = self.pending.pop(key)
        self.busy.discard(p.client)
        if output == "FAIL":
            return  # definitely not done: not part of the history
        ret = INFO if output is None else next(self._clock)
        if output == "OK" and p.input[0] != "read":
            self.acknowledged_writes += 1
        self.history[p.book].append(Operation(p.call, ret, p.input, output))

    def close_history(self) -> None:
        for key in list(self.pending):
            self._finish(key, None)

    def initial_states(self) -> dict[str, BookState]:
        return {b: BookState(s) for b, s in self.initial.items()}


def _op(book: str, args: tuple[Any, ...], ticket: int) -> Op:
    kind = args[0]
    if kind == "set":
        return Op("set_stock", request_id=f"set:{ticket}", items=((book, args[1]),))
    if kind == "reserve":
        return Op("reserve", f"reserve:{args[1]}", args[1], 1, ((book, args[2]),))
    return Op(kind, f"{kind}:{args[1]}", args[1], 1)
