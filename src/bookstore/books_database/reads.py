"""Linearizable reads by read index, the primary's part of replication.py's rule 6.

A read arriving at the primary waits for two things: the stock applied up to the
commit index it arrived at (at least the primary's no-op), and a majority
answering the heartbeat round after its arrival in this view, which proves the
replica was still primary once the read had arrived. Then it is answered from
the applied stock. Whatever waits when the primary steps down is answered
NOT_PRIMARY by the replica (`drop`).
"""

from __future__ import annotations

from dataclasses import dataclass

from bookstore.books_database.messages import Answer
from bookstore.books_database.stock import Result, StockMachine


@dataclass(frozen=True)
class _Read:
    ticket: int
    book_ids: tuple[str, ...]
    index: int  # applied up to here
    round: int  # and this heartbeat round answered by a majority


class ReadIndex:
    def __init__(self) -> None:
        self._waiting: list[_Read] = []

    def add(self, ticket: int, book_ids: tuple[str, ...], index: int, round_: int) -> None:
        self._waiting.append(_Read(ticket, book_ids, index, round_))

    def waiting_for(self, round_: int) -> bool:
        """Whether a read waits for a round after `round_` (then it is due now)."""
        return any(r.round > round_ for r in self._waiting)

    def serve(self, majority_round: int, machine: StockMachine) -> list[Answer]:
        """The answers of the reads that are ready; the others keep waiting."""
        ready = [
            r for r in self._waiting if r.round <= majority_round and machine.applied >= r.index
        ]
        self._waiting = [r for r in self._waiting if r not in ready]
        return [applied(r.ticket, r.book_ids, machine) for r in ready]

    def drop(self) -> list[int]:
        """Every waiting read's ticket, forgotten."""
        tickets, self._waiting = [r.ticket for r in self._waiting], []
        return tickets


def applied(ticket: int, book_ids: tuple[str, ...], machine: StockMachine) -> Answer:
    """The applied stock of `book_ids` (all known to the machine), as the answer."""
    books = machine.books
    return Answer(
        ticket, Result(), tuple((b, books[b].stock, books[b].available) for b in book_ids)
    )
