"""A books-database replica: `replication.Replica` over its `StockMachine`, with a
simulated disk, driven like driver.py does: a turn takes every input that arrived
while the last write was on its way to disk and ends with the replica's own tick;
its eager messages (the primary's Appends) and answers leave at once, its durable
part is written (one fsync, which takes a while), and then its other messages
leave and the replica hears of it (`on_persisted`). The disk holds the hard
state, the snapshot (its index and view, and the applied stock) and the log after
it, and the applied index (the stock is rebuilt from the snapshot and the log)."""

from __future__ import annotations

import random
from typing import Any

from bookstore.books_database.messages import Compaction, Entry, Observer, Outgoing, Output, Timings
from bookstore.books_database.replication import PRIMARY, Replica
from bookstore.books_database.stock import BookRow
from bookstore.simulation import mutants
from bookstore.simulation.workload import BOOKS, INITIAL_STOCK
from bookstore.simulation.world import Proc, World

REPLICAS = (1, 2, 3)
TIMINGS = Timings(heartbeat=0.05, election_min=0.3, election_max=0.6)
# small, so that runs compact their logs and a lagging backup gets a snapshot
COMPACTION = Compaction(keep=20, every=20)
WRITE_S = (0.0005, 0.004)  # how long a turn's write (one fsync) takes


def initial_books() -> dict[str, BookRow]:
    return {b: BookRow(b, INITIAL_STOCK) for b in BOOKS}


class _Watch(Observer):
    """Tells the invariants what this replica applies and what its primary appends."""

    def __init__(self, proc: BooksReplica) -> None:
        self.proc = proc

    def applied(self, index: int, entry: Entry) -> None:
        self.proc.world.inv.stock_applied(self.proc, index, entry)  # type: ignore[union-attr]


class BooksReplica(Proc):
    tick_s = 0.1

    def __init__(self, world: World, my_id: int) -> None:
        super().__init__(world, f"db{my_id}")
        self.my_id = my_id
        self.replica = self._replica()

    def _replica(self) -> Replica:
        machine = mutants.machine_class(self.world.mutant)(initial_books())
        log: list[Entry] = list(self.disk.log("log"))
        snap_index, snap_view = self.disk.durable.get("snap", (0, 0))
        image = self.disk.durable.get("image")
        if image is not None:
            machine.restore(image[0], image[1])
        for index in range(machine.applied + 1, self.disk.durable.get("applied", 0) + 1):
            machine.apply(index, log[index - snap_index - 1].op)
        machine.take_changes()
        view, voted = self.disk.durable.get("hard", (0, 0))
        replica = Replica(
            self.my_id,
            REPLICAS,
            machine,
            view=view,
            voted_for=voted,
            log=log,
            snapshot=(snap_index, snap_view),
            timings=TIMINGS,
            compaction=COMPACTION,
            rng=random.Random(self.world.rng.random()),
            observer=_Watch(self),
        )
        mutants.patch_replica(replica, self.world.mutant)
        self.tickets: dict[int, tuple[str, str]] = {}  # ticket -> (client, request id)
        self.next_ticket = 0
        self.carried = Output()  # on_persisted's durable part, written with the next turn
        self.waiting: list[tuple[str, tuple[Any, ...]]] = []  # inputs of the next turn
        self.writing = False  # a turn's write is on its way to disk
        return replica

    @property
    def primary_now(self) -> bool:
        return self.up and self.replica.role == PRIMARY

    def holds(self, index: int, entry: Entry) -> bool:
        """Whether this replica's disk holds `entry` at `index` (in its snapshot, or
        in its log after it)."""
        snap_index: int = self.disk.durable.get("snap", (0, 0))[0]
        if index <= snap_index:
            return True  # compacted: only committed entries are, and this one is
        log: list[Entry] = self.disk.log("log")
        return len(log) >= index - snap_index and log[index - snap_index - 1] == entry

    def recover(self) -> None:
        self.replica = self._replica()

    def receive(self, src: str, m: tuple[Any, ...]) -> None:
        self.waiting.append((src, m))
        if not self.writing:
            self._turn()

    def tick(self) -> None:
        if not self.writing:
            self._turn()

    def _input(self, src: str, m: tuple[Any, ...], now: float) -> Output:
        if m[0] == "repl":
            return self.replica.on_message(m[1], now)
        # ("write", request id, op): its turn ends with a tick, which sends it to the backups
        self.next_ticket += 1
        self.tickets[self.next_ticket] = (src, m[1])
        return self.replica.submit_many([(self.next_ticket, m[2])], now)

    def _turn(self) -> None:
        """As driver.py's turn (a group commit): every input that arrived while the
        last write was on its way to disk, then a tick; the eager messages (the
        primary's Appends) leave and the answers go at once, and the durable part
        goes to disk, which takes a while (`_written`)."""
        now = self.now()
        out, self.carried = self.carried, Output()
        waiting, self.waiting = self.waiting, []
        for src, m in waiting:
            out.merge(self._input(src, m, now))
        out.merge(self.replica.on_tick(now))
        self._emit(out.early())
        self._answer(out)
        self._persist(out)
        if self.disk.dirty:
            self.writing = True
            delay = self.world.rng.uniform(*WRITE_S)
            self.world.sched.after(
                delay, self._written, (self.incarnation, out), f"{self.name} fsync"
            )
        else:
            self._done(out)

    def _written(self, arg: tuple[int, Output]) -> None:
        incarnation, out = arg
        if incarnation != self.incarnation or not self.up:
            return  # crashed meanwhile: the write is lost
        if self.paused:  # the write is done, but the process runs again only later
            self.world.sched.after(0.01, self._written, arg)
            return
        self.disk.fsync()
        self.writing = False
        self._done(out)
        if self.waiting:
            self._turn()

    def _done(self, out: Output) -> None:
        """The turn's writes are on disk: the other messages leave, and the replica
        hears it (`on_persisted`); what that applies is written with the next turn."""
        self._emit(out.late())
        after = self.replica.on_persisted(self.now())
        self._answer(after)
        self._emit(after.early())
        after.eager = []
        self.carried = after

    def _persist(self, out: Output) -> None:
        disk = self.disk
        if out.hard_state is not None:
            disk.put("hard", out.hard_state)
        log = self.replica.log
        if out.installed:
            self.world.count("snapshots installed")
        if out.compacted is not None or out.installed:
            # the applied stock is the snapshot: store it, and the log after it
            disk.put("snap", (log.snap_index, log.snap_view))
            disk.put("image", (self.replica.machine.image(), self.replica.machine.applied))
            disk.append("log", 1, log.entries)
        else:
            for write in out.log_writes:
                disk.append("log", write.start - log.snap_index, write.entries)
        if out.applied != disk.get("applied", 0):
            disk.put("applied", out.applied)

    def _emit(self, messages: list[Outgoing]) -> None:
        for outgoing in messages:
            self.send(f"db{outgoing.to}", ("repl", outgoing.message))

    def _answer(self, out: Output) -> None:
        for answer in out.answers:
            client, request_id = self.tickets.pop(answer.ticket, ("", ""))
            if not client:
                continue
            result = answer.result
            if result.code in ("OK", "VOTED_NO"):
                self.world.inv.answered_write(self, request_id)  # type: ignore[union-attr]
            leader = self.replica.leader
            self.send(client, ("db_answer", request_id, result.code, result.message, leader))
        out.answers = []
