"""Payment: the same `commitment.participant.Participant` the ledger runs, over a
store on a simulated disk (fsynced before every answer); the test cards'
behaviour votes, as in `payment.ledger`."""

from __future__ import annotations

from typing import Any

from bookstore.commitment.participant import Participant, Record, TxnError
from bookstore.payment.cards import DECLINE_REASONS
from bookstore.payment.ledger import Authorization
from bookstore.simulation import mutants
from bookstore.simulation.disk import Disk
from bookstore.simulation.workload import TOKENS
from bookstore.simulation.world import Proc, World

PAYMENT = "payment"


class DiskStore:
    """The participant's durable state on a simulated disk."""

    def __init__(self, disk: Disk, forget_epoch: bool = False) -> None:
        self.disk = disk
        self.forget_epoch = forget_epoch  # the participant-ignores-epoch mutant

    def get(self, txn_id: str) -> Record[Authorization] | None:
        record: Record[Authorization] | None = self.disk.get(f"t:{txn_id}")
        return record

    def put(self, record: Record[Authorization]) -> None:
        self.disk.put(f"t:{record.txn_id}", record)

    def highest_epoch(self) -> int:
        return 0 if self.forget_epoch else int(self.disk.get("epoch", 0))

    def set_highest_epoch(self, epoch: int) -> None:
        self.disk.put("epoch", epoch)


def vote(auth: Authorization) -> str:
    return DECLINE_REASONS.get(TOKENS[auth.token], "")


class Payment(Proc):
    def __init__(self, world: World) -> None:
        super().__init__(world, PAYMENT)
        forget = world.mutant == mutants.IGNORES_EPOCH
        self.rules: Participant[Authorization] = Participant(DiskStore(self.disk, forget))

    def receive(self, src: str, m: tuple[Any, ...]) -> None:
        kind, oid, epoch = m[0], m[1], m[2]
        try:
            if kind == "pay_prepare":
                result = self.rules.prepare(oid, epoch, m[3], vote)
                reply: tuple[Any, ...] = ("pay_vote", oid, epoch, result.yes, result.reason)
            elif kind == "pay_commit":
                self.rules.commit(oid, epoch)
                reply = ("pay_ack", oid, epoch)
            else:
                self.rules.abort(oid, epoch, m[3] or "voided")
                reply = ("pay_ack", oid, epoch)
        except TxnError as refused:
            self.disk.rollback()  # a refusal changes nothing
            reply = ("pay_refused", oid, epoch, refused.code, refused.message)
        else:
            self.world.inv.participant_applied(PAYMENT, kind, oid, epoch)  # type: ignore[union-attr]
        self.disk.fsync()
        self.send(src, reply)
