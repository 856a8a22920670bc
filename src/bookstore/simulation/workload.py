"""The checkouts a seed runs: a mix of approved, rejected, out-of-stock, declined
and abandoned orders, drawn from the seed."""

from __future__ import annotations

import random
from dataclasses import dataclass

from bookstore.payment.cards import Behaviour

BOOKS = {"b1": 2500, "b2": 1800, "b3": 3200, "b4": 900}  # book id -> price in cents
INITIAL_STOCK = 30
TOKENS = {  # payment's token table: token -> the test card's behaviour
    "tok-ok": Behaviour.APPROVE,
    "tok-declined": Behaviour.DECLINE,
    "tok-funds": Behaviour.INSUFFICIENT_FUNDS,
}
KINDS = ("approved", "rejected", "out-of-stock", "declined", "abandoned")
WEIGHTS = (60, 14, 10, 10, 6)


@dataclass(frozen=True)
class Plan:
    order_id: str
    kind: str
    items: tuple[tuple[str, int], ...]  # (book id, quantity), sorted by book id
    token: str
    fails: str = ""  # the checkout event that fails ("" none)
    abandon_after: float = 0.0  # the caller gives up this long after starting (0 never)
    abandon_twice: bool = False  # and again while the cancel is under way

    @property
    def amount_cents(self) -> int:
        return sum(BOOKS[b] * q for b, q in self.items)


def plans(rng: random.Random, n: int) -> list[Plan]:
    out = []
    for i in range(n):
        kind = rng.choices(KINDS, WEIGHTS)[0]
        books = sorted(rng.sample(sorted(BOOKS), rng.choice((1, 1, 2))))
        high = kind == "out-of-stock"
        items = tuple((b, rng.randint(25, 60) if high else rng.randint(1, 3)) for b in books)
        token = "tok-ok"
        if kind == "declined":
            token = rng.choice(("tok-declined", "tok-funds"))
        fails = rng.choice("abcde") if kind == "rejected" else ""
        abandon = rng.uniform(0.0, 0.02) if kind == "abandoned" else 0.0
        out.append(Plan(f"o{i:04d}", kind, items, token, fails, abandon, rng.random() < 0.5))
    return out
