"""Orders of almost a megabyte each, many at once: batches split by size keep every stream up.

The HTTP edge refuses such comments (a 1000-character limit); here the pipeline is
driven directly, so a batch of twelve ~900 KB orders would exceed gRPC's 4 MiB
message limit if it were sent as one message, break the Session stream and fail
every order in flight.
"""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest
from checkout_cluster import Cluster, course_request

from bookstore.orchestrator.errors import ApiError


async def test_huge_orders_beside_ordinary_ones_are_all_answered(cluster: Cluster) -> None:
    seed = random.randrange(1 << 32)
    print(f"seed {seed}")
    requests = []
    for n in range(52):
        request = course_request()
        if n < 12:
            request.userComment = "c" * 900_000  # past the edge's limit on purpose
        requests.append((str(uuid.uuid4()), request))
    random.Random(seed).shuffle(requests)
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(cluster.pipeline.run(oid, req) for oid, req in requests)), timeout=60
    )
    assert [o.reason for o in outcomes if not o.approved] == []
    stats = await cluster.pipeline.stats()
    assert all(s.healthy for s in stats)


async def test_an_order_over_the_message_limit_fails_alone(cluster: Cluster) -> None:
    huge = course_request()
    huge.userComment = "c" * 5_000_000
    ordinary = [
        asyncio.create_task(cluster.pipeline.run(str(uuid.uuid4()), course_request()))
        for _ in range(10)
    ]
    with pytest.raises(ApiError) as refused:
        await cluster.pipeline.run(str(uuid.uuid4()), huge)
    assert refused.value.status == 413
    outcomes = await asyncio.wait_for(asyncio.gather(*ordinary), timeout=60)
    assert all(o.approved for o in outcomes)
