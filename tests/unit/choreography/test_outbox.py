"""The batching outbox: batches split by size, oversized messages refused alone."""

from __future__ import annotations

from bookstore.choreography.links import Outbox
from bookstore.pb import checkout_pb2, common_pb2


def update(order: str, padding: int = 0) -> checkout_pb2.ClockUpdate:
    return checkout_pb2.ClockUpdate(
        order_id=common_pb2.OrderId(value=order), event="a", sender="x" * padding
    )


async def test_a_batch_is_split_before_it_grows_past_its_bytes() -> None:
    outbox: Outbox[checkout_pb2.ClockUpdate] = Outbox(batch_bytes=10_000)
    for n in range(10):
        outbox.put(update(f"o{n}", padding=3_000))
    batches = [await outbox.take() for _ in range(4)]
    assert [len(b) for b in batches] == [3, 3, 3, 1]
    assert all(sum(u.ByteSize() for u in b) <= 10_000 for b in batches)
    assert [u.order_id.value for b in batches for u in b] == [f"o{n}" for n in range(10)]


async def test_one_message_over_the_batch_bytes_still_goes_alone() -> None:
    outbox: Outbox[checkout_pb2.ClockUpdate] = Outbox(batch_bytes=1_000, max_item_bytes=10_000)
    outbox.put(update("big", padding=5_000))
    outbox.put(update("small"))
    assert [u.order_id.value for u in await outbox.take()] == ["big"]
    assert [u.order_id.value for u in await outbox.take()] == ["small"]


async def test_an_oversized_message_is_refused_and_only_it() -> None:
    outbox: Outbox[checkout_pb2.ClockUpdate] = Outbox(max_item_bytes=1_000)
    outbox.put(update("before"))
    outbox.put(update("huge", padding=5_000))
    outbox.put(update("after"))
    assert [u.order_id.value for u in await outbox.take()] == ["before", "after"]
    assert outbox.refused == 1


async def test_a_batch_put_back_goes_first() -> None:
    outbox: Outbox[checkout_pb2.ClockUpdate] = Outbox()
    outbox.put(update("later"))
    outbox.requeue([update("lost-1"), update("lost-2")])
    assert [u.order_id.value for u in await outbox.take()] == ["lost-1", "lost-2", "later"]
