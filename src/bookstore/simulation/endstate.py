"""The invariants checked once the faults have healed and the work has drained."""

from __future__ import annotations

from bookstore.books_database.linearizability import INFO, BookState, Operation, is_linearizable
from bookstore.books_database.stock import RESERVE
from bookstore.commitment.participant import State
from bookstore.simulation.books import BooksReplica
from bookstore.simulation.checkout import Orchestrator, Service
from bookstore.simulation.executor import Executor
from bookstore.simulation.invariants import Invariants
from bookstore.simulation.workload import BOOKS, INITIAL_STOCK
from bookstore.simulation.world import World


def waiting_for(world: World, inv: Invariants) -> str:
    """What the end state still waits for ("" when it may be judged)."""
    procs = world.procs
    orchestrator = procs["orchestrator"]
    assert isinstance(orchestrator, Orchestrator)
    if orchestrator.busy:
        return "checkouts still running"
    if not inv.acked <= inv.completed.keys():
        return f"orders not executed: {sorted(inv.acked - inv.completed.keys())[:5]}"
    unfinished = procs["queue"].unfinished()  # type: ignore[attr-defined]
    if unfinished:
        return f"{unfinished} decisions not finished"
    if any(isinstance(p, Service) and p.node.orders for p in procs.values()):
        return "orders left in a checkout service"
    replicas = [p.replica for p in procs.values() if isinstance(p, BooksReplica)]
    if len({(r.machine.applied, r.last_index) for r in replicas}) != 1:
        return "replicas not caught up"
    leaders = [p.name for p in procs.values() if isinstance(p, Executor) and p.leading]
    if leaders != ["x4"]:
        return f"the highest executor x4 is up, but the leaders are {leaders}"
    return ""


def check(world: World, inv: Invariants) -> None:
    replicas = [p for p in world.procs.values() if isinstance(p, BooksReplica)]
    digests = {r.replica.machine.digest() for r in replicas}
    if len(digests) != 1:
        inv.fail(f"replicas at the same applied index differ: {len(digests)} digests")
    machine = replicas[0].replica.machine
    sold = dict.fromkeys(BOOKS, 0)
    committed = set()
    for txn in machine.txns.values():
        if txn.state is State.PREPARED:
            inv.fail(f"books database: txn {txn.txn_id} left in doubt")
        if txn.state is State.COMMITTED:
            committed.add(txn.txn_id)
            for book_id, quantity in txn.request or ():
                sold[book_id] += quantity
    for book_id, row in machine.books.items():
        if row.stock + sold[book_id] != INITIAL_STOCK or row.reserved != 0:
            inv.fail(f"book {book_id}: stock {row.stock} + sold {sold[book_id]} != {INITIAL_STOCK}")
    captured = set()
    for key, record in world.procs["payment"].disk.durable.items():
        if key.startswith("t:"):
            if record.state is State.PREPARED:
                inv.fail(f"payment: txn {record.txn_id} left in doubt")
            if record.state is State.COMMITTED:
                captured.add(record.txn_id)
    if captured != committed:
        inv.fail(
            f"captured but not committed: {sorted(captured - committed)}; "
            f"committed but not captured: {sorted(committed - captured)}"
        )
    executed = {oid for oid, outcome in inv.completed.items() if outcome == "executed"}
    if executed != committed:
        inv.fail(f"executed {sorted(executed ^ committed)} differs from the stock committed")
    _linearizable(inv)


def _linearizable(inv: Invariants) -> None:
    """Each book's history: one operation per txn and kind, split over its books."""
    items = {txn: op.items for (txn, kind), (_, _, op, _) in inv.history.items() if kind == RESERVE}
    per_book: dict[str, list[Operation]] = {b: [] for b in BOOKS}
    for (txn, kind), (call, ret, _, code) in inv.history.items():
        lines = items.get(txn, ())
        for book_id, quantity in lines:
            output = code
            if kind == RESERVE and code == "VOTED_NO" and len(lines) > 1:
                output = None  # all or nothing: which book lacked copies is not said
            args = ("reserve", txn, quantity) if kind == RESERVE else (kind, txn)
            done = ret if ret is not None and output is not None else INFO
            per_book[book_id].append(Operation(call, done, args, output))
    for book_id, history in per_book.items():
        if not is_linearizable(history, BookState(INITIAL_STOCK)):
            inv.fail(f"book {book_id}: its stock history is not linearizable")
