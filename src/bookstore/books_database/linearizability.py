"""A linearizability checker for the stock of one book (Wing & Gong's search,
with Porcupine's memo of (linearized set, state) pairs and its treatment of
unknown outcomes).

A history is a list of operations, each with the logical time it was invoked
and the time it returned. An operation whose outcome is unknown (a timeout,
a crash: Jepsen's "info") has `ret = inf` and `output = None`: it may have
taken effect at any point after its invocation, or never. A history is
linearizable when some total order of its operations respects real time (an
operation that returned before another was invoked comes first) and replays
through the sequential model giving every known output.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

INFO = math.inf


@dataclass(frozen=True)
class Operation:
    call: float
    ret: float  # INFO: outcome unknown
    input: tuple[Any, ...]
    output: Hashable | None  # None: outcome unknown


State = Hashable
Model = Callable[[State, tuple[Any, ...]], tuple[State, Hashable]]


@dataclass(frozen=True)
class BookState:
    """The sequential model of one book: its stock and the transactions touching it."""

    stock: int
    reserved: frozenset[tuple[str, int]] = frozenset()  # (txn, quantity)
    finished: frozenset[tuple[str, str]] = frozenset()  # (txn, "committed" | "released")

    @property
    def available(self) -> int:
        return self.stock - sum(q for _, q in self.reserved)


def book_model(state: State, op: tuple[Any, ...]) -> tuple[State, Hashable]:
    """One op on one book: ("read",), ("set", n), ("reserve", txn, k), ("commit"|"release", txn)."""
    assert isinstance(state, BookState)
    kind = op[0]
    if kind == "read":
        return state, (state.stock, state.available)
    if kind == "set":
        held = state.stock - state.available
        if op[1] < held:
            return state, "BELOW_RESERVED"
        return BookState(op[1], state.reserved, state.finished), "OK"
    if kind == "reserve":
        _, txn, k = op
        known = _known(state, txn)
        if known is not None:  # a known txn answers its first outcome (participant rule 3)
            return state, known
        if state.available < k:  # a no is remembered as an abort (participant rule 2)
            aborted = state.finished | {(txn, "released")}
            return BookState(state.stock, state.reserved, aborted), "VOTED_NO"
        return BookState(state.stock, state.reserved | {(txn, k)}, state.finished), "OK"
    _, txn = op
    target = "committed" if kind == "commit" else "released"
    mine = [(t, q) for t, q in state.reserved if t == txn]
    if not mine:
        return _finished(state, txn, target)
    stock = state.stock - mine[0][1] if kind == "commit" else state.stock
    return BookState(stock, state.reserved - {mine[0]}, state.finished | {(txn, target)}), "OK"


def _known(state: BookState, txn: str) -> str | None:
    """A reserve's answer for a txn this book has seen: prepared or committed -> yes,
    released (an abort first, presumed abort) -> no; None for a new txn."""
    if any(t == txn for t, _ in state.reserved):
        return "OK"
    done = dict(state.finished).get(txn)
    if done is None:
        return None
    return "OK" if done == "committed" else "VOTED_NO"


def _finished(state: BookState, txn: str, target: str) -> tuple[State, Hashable]:
    """A commit or release of a txn holding no copies: the participant rules' answer."""
    done = dict(state.finished).get(txn)
    if done == target:
        return state, "OK"  # the same answer again
    if done is not None:
        return state, "ALREADY_COMMITTED" if done == "committed" else "ALREADY_ABORTED"
    if target == "committed":
        return state, "UNKNOWN_TXN"
    return BookState(state.stock, state.reserved, state.finished | {(txn, target)}), "OK"


def is_linearizable(history: list[Operation], initial: State, model: Model = book_model) -> bool:
    """Whether some order of `history` explains it (see the module's docstring).

    An operation of unknown outcome may have taken effect, or never: once only such
    operations are left, the history is explained. The search tries the operations of
    known outcome first and an unknown one only where nothing else goes on: every
    order is still searched before False is answered, but a history that is explained
    by leaving out what nobody observed (most are) is found without trying each subset
    of the unknown ones, which grows as 2 ** their number.
    """
    ops = sorted(history, key=lambda o: o.call)
    known = frozenset(i for i, op in enumerate(ops) if op.output is not None)
    everything = frozenset(range(len(ops)))
    seen: set[tuple[frozenset[int], State]] = set()
    # Depth-first search over (done set, state); each level linearizes one more op.
    stack: list[tuple[frozenset[int], State]] = [(frozenset(), initial)]
    while stack:
        done, state = stack.pop()
        if known <= done:
            return True
        left = everything - done
        first_return = min(ops[i].ret for i in left)
        # Pushed so that they are popped (tried) known ones first, the earliest to
        # return first: the order their answers came in explains most histories.
        for i in sorted(left, key=lambda j: (j in known, -ops[j].ret, -ops[j].call)):
            op = ops[i]
            if op.call > first_return:
                continue  # something still pending returned before this was invoked
            after, output = model(state, op.input)
            if op.output is not None and output != op.output:
                continue
            key = (done | {i}, after)
            if key not in seen:
                seen.add(key)
                stack.append(key)
    return False
