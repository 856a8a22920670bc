from bookstore.orchestrator.store import APPROVED, OrderItem, OrderRecord, OrderStore


def _record(n: int) -> OrderRecord:
    return OrderRecord(f"o{n}", APPROVED, None, 1_700_000_000.0 + n, (OrderItem("b001", "T", 2),))


def test_store_evicts_the_oldest_beyond_capacity() -> None:
    store = OrderStore(3)
    for n in range(5):
        store.put(_record(n))
    assert len(store) == 3
    assert store.get("o0") is None and store.get("o1") is None
    assert [r.order_id for r in store.recent(10)] == ["o4", "o3", "o2"]


def test_recent_is_newest_first_and_limited() -> None:
    store = OrderStore(10)
    for n in range(4):
        store.put(_record(n))
    assert [r.order_id for r in store.recent(2)] == ["o3", "o2"]


def test_store_evicts_the_oldest_beyond_its_bytes() -> None:
    store = OrderStore(1000, max_bytes=20_000)
    big = (OrderItem("", "x" * 5_000, 1),)
    for n in range(10):
        store.put(OrderRecord(f"big{n}", APPROVED, None, 1_700_000_000.0, big))
    assert store.bytes <= 20_000
    assert len(store) < 5
    assert store.get("big9") is not None and store.get("big0") is None
