"""Every protocol message survives its protobuf form unchanged."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bookstore.books_database import wire
from bookstore.books_database.messages import (
    Append,
    AppendReply,
    Entry,
    Message,
    RequestVote,
    Vote,
)
from bookstore.books_database.stock import KINDS, Op
from bookstore.pb import books_database_pb2 as pb

n = st.integers(0, 2**40)
ids = st.integers(1, 3)
text = st.text(max_size=12)
ops = st.builds(
    Op,
    kind=st.sampled_from(KINDS),
    request_id=text,
    txn_id=text,
    epoch=n,
    items=st.lists(st.tuples(text, st.integers(-(2**40), 2**40)), max_size=4).map(tuple),
)
messages = st.one_of(
    st.builds(RequestVote, n, ids, n, n, st.booleans()),
    st.builds(Vote, n, ids, st.booleans(), st.booleans()),
    st.builds(
        Append, n, ids, n, n, st.lists(st.builds(Entry, n, ops), max_size=4).map(tuple), n, n
    ),
    st.builds(AppendReply, n, ids, st.booleans(), n, n),
)


@given(messages)
def test_a_message_round_trips(msg: Message) -> None:
    encoded = wire.message_pb(msg).SerializeToString()
    assert wire.message_from_pb(pb.PeerMessage.FromString(encoded)) == msg


def test_a_message_of_an_unknown_kind_is_ignored() -> None:
    assert wire.message_from_pb(pb.PeerMessage(view=3, sender=1)) is None
