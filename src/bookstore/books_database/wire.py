"""Protocol messages and ops to and from their protobuf form."""

from __future__ import annotations

from collections.abc import Iterable

from bookstore.books_database.messages import (
    Append,
    AppendReply,
    Entry,
    InstallSnapshot,
    Message,
    RequestVote,
    Vote,
)
from bookstore.books_database.stock import COMMIT, RELEASE, RESERVE, Image, Op, Result, Txn
from bookstore.commitment.participant import State
from bookstore.pb import books_database_pb2 as pb


def lines(items: tuple[tuple[str, int], ...]) -> list[pb.StockLine]:
    return [pb.StockLine(book_id=b, quantity=q) for b, q in items]


def items_of(stock_lines: Iterable[pb.StockLine]) -> tuple[tuple[str, int], ...]:
    return tuple((line.book_id, int(line.quantity)) for line in stock_lines)


def reserve_op(request: pb.ReserveRequest) -> Op:
    return Op(RESERVE, request.request_id, request.txn_id, request.epoch, items_of(request.items))


def txn_op(kind: str, request: pb.TxnRequest) -> Op:
    """A commit or a release."""
    return Op(kind, request.request_id, request.txn_id, request.epoch)


def write_op(write: pb.WriteOp) -> Op | None:
    """One operation of a Write batch; None for an empty one (or of a kind unknown here)."""
    kind = write.WhichOneof("op")
    if kind == "reserve":
        return reserve_op(write.reserve)
    if kind == "commit":
        return txn_op(COMMIT, write.commit)
    if kind == "release":
        return txn_op(RELEASE, write.release)
    return None


def op_pb(op: Op) -> pb.Op:
    return pb.Op(
        kind=op.kind,
        request_id=op.request_id,
        txn_id=op.txn_id,
        epoch=op.epoch,
        items=lines(op.items),
    )


def op_from_pb(m: pb.Op) -> Op:
    return Op(m.kind, m.request_id, m.txn_id, m.epoch, items_of(m.items))


def message_pb(msg: Message) -> pb.PeerMessage:
    out = pb.PeerMessage(view=msg.view, sender=msg.sender)
    if isinstance(msg, RequestVote):
        out.request_vote.CopyFrom(
            pb.RequestVote(last_view=msg.last_view, last_index=msg.last_index, pre=msg.pre)
        )
    elif isinstance(msg, Vote):
        out.vote.CopyFrom(pb.Vote(granted=msg.granted, pre=msg.pre))
    elif isinstance(msg, Append):
        out.append.CopyFrom(
            pb.Append(
                prev_index=msg.prev_index,
                prev_view=msg.prev_view,
                entries=[pb.Entry(view=e.view, op=op_pb(e.op)) for e in msg.entries],
                commit=msg.commit,
                round=msg.round,
            )
        )
    elif isinstance(msg, InstallSnapshot):
        out.install_snapshot.CopyFrom(snapshot_pb(msg))
    else:
        out.append_reply.CopyFrom(
            pb.AppendReply(ok=msg.ok, match_index=msg.match_index, round=msg.round)
        )
    return out


def snapshot_pb(msg: InstallSnapshot) -> pb.InstallSnapshot:
    image = msg.image
    return pb.InstallSnapshot(
        index=msg.index,
        last_view=msg.last_view,
        books=[pb.StockRow(book_id=b, title=t, stock=s, reserved=r) for b, t, s, r in image.books],
        txns=[
            pb.TxnRow(
                txn_id=t.txn_id,
                state=t.state.value,
                epoch=t.epoch,
                items=lines(t.request or ()),
                first_seen_as_release=t.request is None,
                reason=t.reason,
            )
            for t in image.txns
        ],
        answers=[
            pb.AnswerRow(request_id=r, code=a.code, message=a.message) for r, a in image.answers
        ],
        max_epoch=image.max_epoch,
        round=msg.round,
        part=msg.part,
        parts=msg.parts,
    )


def snapshot_from_pb(view: int, sender: int, m: pb.InstallSnapshot) -> InstallSnapshot:
    image = Image(
        books=tuple((b.book_id, b.title, b.stock, b.reserved) for b in m.books),
        txns=tuple(
            Txn(
                t.txn_id,
                State(t.state),
                t.epoch,
                None if t.first_seen_as_release else items_of(t.items),
                t.reason,
            )
            for t in m.txns
        ),
        answers=tuple((a.request_id, Result(a.code, a.message)) for a in m.answers),
        max_epoch=m.max_epoch,
    )
    return InstallSnapshot(
        view, sender, m.index, m.last_view, image, m.round, m.part, max(1, m.parts)
    )


def message_from_pb(m: pb.PeerMessage) -> Message | None:
    """The protocol message, or None for a message of a kind this replica does not know."""
    kind = m.WhichOneof("body")
    if kind == "request_vote":
        r = m.request_vote
        return RequestVote(m.view, m.sender, r.last_view, r.last_index, r.pre)
    if kind == "vote":
        return Vote(m.view, m.sender, m.vote.granted, m.vote.pre)
    if kind == "append":
        a = m.append
        entries = tuple(Entry(e.view, op_from_pb(e.op)) for e in a.entries)
        return Append(m.view, m.sender, a.prev_index, a.prev_view, entries, a.commit, a.round)
    if kind == "install_snapshot":
        return snapshot_from_pb(m.view, m.sender, m.install_snapshot)
    if kind == "append_reply":
        r2 = m.append_reply
        return AppendReply(m.view, m.sender, r2.ok, r2.match_index, r2.round)
    return None
